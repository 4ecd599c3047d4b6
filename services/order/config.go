package main

import (
	"fmt"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/platform"
)

// serviceName is the service's name: its consumer group, its event source,
// its database role prefix and its default OTEL service name.
const serviceName = events.SourceOrder

// config is everything the order service reads from its environment. It
// has no variables of its own beyond the shared ones of platform.Config
// (HTTP_ADDR, default ":8081"; DATABASE_URL, default the order_svc role on
// the local stack; KAFKA_BROKERS; DB_MAX_CONNS; LOG_LEVEL; OTEL_*).
type config struct {
	Platform platform.Config
}

// loadConfig reads the configuration through getenv, reporting all problems
// in one error.
func loadConfig(getenv func(string) string) (config, error) {
	pc, err := platform.ParseConfig(getenv, serviceName, ":8081")
	if err != nil {
		return config{}, fmt.Errorf("order config: %w", err)
	}
	return config{Platform: pc}, nil
}
