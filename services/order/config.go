package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/platform"
)

// serviceName is the service's name: its consumer group, its event source,
// its database role prefix and its default OTEL service name.
const serviceName = events.SourceOrder

// defaultSagaDeadline is SAGA_DEADLINE when it is not set.
const defaultSagaDeadline = 5 * time.Minute

// config is everything the order service reads from its environment: the
// shared variables of platform.Config (HTTP_ADDR, default ":8081";
// DATABASE_URL, default the order_svc role on the local stack;
// KAFKA_BROKERS; DB_MAX_CONNS; LOG_LEVEL; OTEL_*) and its own:
//
//	SAGA_DEADLINE  how long an order's saga may take, a Go duration > 0
//	               (default 5m); an order still not shipped or cancelled
//	               then is expired and, unless shipping has shipped it,
//	               cancelled with reason timed_out.
type config struct {
	Platform     platform.Config
	SagaDeadline time.Duration
}

// loadConfig reads the configuration through getenv, reporting all problems
// in one error.
func loadConfig(getenv func(string) string) (config, error) {
	var problems []error
	pc, err := platform.ParseConfig(getenv, serviceName, ":8081")
	if err != nil {
		problems = append(problems, err)
	}
	c := config{Platform: pc, SagaDeadline: defaultSagaDeadline}
	if v := getenv("SAGA_DEADLINE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Errorf("SAGA_DEADLINE %q: want a duration > 0 such as 5m or 90s", v))
		}
		c.SagaDeadline = d
	}
	if err := errors.Join(problems...); err != nil {
		return config{}, fmt.Errorf("order config: %w", err)
	}
	return c, nil
}

// LogValue shows the service's own settings (none of them secret).
func (c config) LogValue() slog.Value {
	return slog.GroupValue(slog.Duration("saga_deadline", c.SagaDeadline),
		slog.Duration("sweep_interval", sweepInterval(c.SagaDeadline)))
}
