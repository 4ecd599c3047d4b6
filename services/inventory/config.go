package main

import (
	"fmt"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/platform"
)

// serviceName is the service's name: its consumer group, its event source,
// its database role prefix and its default OTEL service name.
const serviceName = events.SourceInventory

// config is everything the inventory service reads from its environment.
// It has no settings of its own beyond the platform's (HTTP_ADDR,
// DATABASE_URL, DB_MAX_CONNS, KAFKA_BROKERS, OTEL_*, LOG_LEVEL).
type config struct {
	Platform platform.Config
}

// loadConfig reads the configuration through getenv, reporting every
// problem in one error.
func loadConfig(getenv func(string) string) (config, error) {
	pc, err := platform.ParseConfig(getenv, serviceName, ":8083")
	if err != nil {
		return config{}, fmt.Errorf("inventory config: %w", err)
	}
	return config{Platform: pc}, nil
}
