package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/telemetry"
)

type metrics struct {
	processed    *prometheus.CounterVec // group, type
	duplicates   *prometheus.CounterVec // group, type
	deadLettered *prometheus.CounterVec // group, type, reason
	skipped      *prometheus.CounterVec // group, type
	retries      *prometheus.CounterVec // group, type
	// newerVersionRetries counts the retries of events of a newer schema
	// version; retries counts them too.
	newerVersionRetries *prometheus.CounterVec   // group, type
	parked              *prometheus.GaugeVec     // group
	offsetsSkipped      *prometheus.CounterVec   // group, topic, partition
	duration            *prometheus.HistogramVec // group, type
	lag                 *prometheus.GaugeVec     // group, topic, partition
	batchSize           *prometheus.HistogramVec // group
}

// newMetrics creates the collectors and registers them on reg, if any.
// Without a registerer they still count, unseen, which keeps the code paths
// free of nil checks. Two consumers on one registerer share the collectors
// (the group label tells them apart).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	byType := []string{"group", "type"}
	m := &metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_messages_processed_total",
			Help: "Events whose handler ran and committed.",
		}, byType),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_duplicates_total",
			Help: "Redelivered events skipped because the inbox already held their id.",
		}, byType),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_dead_lettered_total",
			Help: "Messages written to the dead-letter topic, by reason (decode, unexpected_source, handler, max_attempts, unknown_version).",
		}, []string{"group", "type", "reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_skipped_total",
			Help: "Events of a type the consumer has no handler for.",
		}, byType),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_retries_total",
			Help: "Failed processing attempts that were retried.",
		}, byType),
		newerVersionRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_unknown_version_retries_total",
			Help: "Retried attempts at events of a schema version newer than this build knows (also in consumer_retries_total).",
		}, byType),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "consumer_parked_partitions",
			Help: "Partitions whose failing message is being retried apart from the other partitions.",
		}, []string{"group"}),
		offsetsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_offsets_skipped_total",
			Help: "Messages lost because they left the log (retention) before the group read them.",
		}, []string{"group", "topic", "partition"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consumer_processing_duration_seconds",
			Help:    "Time from start of processing to the outcome (applied, duplicate or dead-lettered), retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12), // 1 ms to ~24 s
		}, byType),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "consumer_batch_size",
			Help:    "Messages fetched and handled together, in one transaction unless one of them failed.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}, []string{"group"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "consumer_lag",
			Help: "Messages not yet committed by the group: high watermark minus committed offset (the log start without a commit), per partition.",
		}, []string{"group", "topic", "partition"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.processed, err = register(reg, m.processed); err != nil {
		return nil, err
	}
	if m.duplicates, err = register(reg, m.duplicates); err != nil {
		return nil, err
	}
	if m.deadLettered, err = register(reg, m.deadLettered); err != nil {
		return nil, err
	}
	if m.skipped, err = register(reg, m.skipped); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.newerVersionRetries, err = register(reg, m.newerVersionRetries); err != nil {
		return nil, err
	}
	if m.parked, err = register(reg, m.parked); err != nil {
		return nil, err
	}
	if m.offsetsSkipped, err = register(reg, m.offsetsSkipped); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.lag, err = register(reg, m.lag); err != nil {
		return nil, err
	}
	if m.batchSize, err = register(reg, m.batchSize); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// reportLag updates consumer_lag every lagInterval until ctx is done. It
// asks the broker, not the Reader: with a group, the Reader knows neither the
// committed offsets nor the partitions other members own. Its client has a
// transport of its own, so a broker restart's broken connections are dropped
// here rather than shared with other clients.
func (c *Consumer) reportLag(ctx context.Context) {
	tr := &kafka.Transport{DialTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Timeout: 5 * time.Second, Transport: tr}
	t := time.NewTicker(c.lagInterval)
	defer t.Stop()
	for {
		if err := c.measureLag(ctx, client); err != nil && ctx.Err() == nil {
			c.log.Debug("measure consumer lag", telemetry.Err(err))
			tr.CloseIdleConnections()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Consumer) measureLag(ctx context.Context, client *kafka.Client) error {
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: c.topics})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	ends := make(map[string][]kafka.OffsetRequest)
	partitions := make(map[string][]int)
	for _, t := range meta.Topics {
		if t.Error != nil {
			continue
		}
		for _, p := range t.Partitions {
			ends[t.Name] = append(ends[t.Name], kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
			partitions[t.Name] = append(partitions[t.Name], p.ID)
		}
	}
	if len(partitions) == 0 {
		return nil
	}
	offsets, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: ends})
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: partitions})
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	if committed.Error != nil {
		return fmt.Errorf("fetch committed offsets: %w", committed.Error)
	}
	done := make(map[string]map[int]int64)
	for topic, ps := range committed.Topics {
		done[topic] = make(map[int]int64, len(ps))
		for _, p := range ps {
			if p.Error == nil {
				done[topic][p.Partition] = p.CommittedOffset
			}
		}
	}
	for topic, ps := range offsets.Topics {
		for _, p := range ps {
			if p.Error != nil {
				continue
			}
			// No commit yet (-1): the group starts at the first offset
			// still there. A commit older than retention counts from the
			// commit: the messages between it and the first offset are
			// not yet read, and lost (consumer_offsets_skipped_total),
			// which clamping would hide.
			from, ok := done[topic][p.Partition]
			if !ok || from < 0 {
				from = p.FirstOffset
			}
			c.metrics.lag.WithLabelValues(c.cfg.Group, topic, strconv.Itoa(p.Partition)).Set(float64(max(p.LastOffset-from, 0)))
		}
	}
	return nil
}
