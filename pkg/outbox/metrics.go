package outbox

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/telemetry"
)

type metrics struct {
	pending         prometheus.Gauge
	oldestAge       prometheus.Gauge
	published       *prometheus.CounterVec
	publishErrors   prometheus.Counter
	publishDuration prometheus.Histogram
	deadLettered    *prometheus.CounterVec
}

// newMetrics registers the relay's metrics on reg. Relays sharing reg share
// the metrics: registering a collector twice returns the first one.
func newMetrics(reg prometheus.Registerer, log *slog.Logger) metrics {
	m := metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_pending_rows",
			Help: "Outbox rows not yet published, as last counted by the leading relay.",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_oldest_pending_age_seconds",
			Help: "Age of the oldest outbox row not yet published.",
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_published_total",
			Help: "Outbox events published to Kafka (re-publications after a failure included).",
		}, []string{"topic"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_publish_errors_total",
			Help: "Outbox batches Kafka did not accept; each is retried.",
		}),
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outbox_publish_duration_seconds",
			Help:    "Time to publish one outbox batch to Kafka.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_dead_lettered_total",
			Help: "Outbox events Kafka refused for good, moved to outbox_dead_letters, by reason (message_too_large, invalid_message, unknown_topic).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m
	}
	m.pending = register(reg, m.pending, log)
	m.oldestAge = register(reg, m.oldestAge, log)
	m.published = register(reg, m.published, log)
	m.publishErrors = register(reg, m.publishErrors, log)
	m.publishDuration = register(reg, m.publishDuration, log)
	m.deadLettered = register(reg, m.deadLettered, log)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Error("outbox metric not registered", telemetry.Err(err))
	return c
}

func (m metrics) clearPending() {
	m.pending.Set(0)
	m.oldestAge.Set(0)
}
