package main

import (
	"fmt"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/platform"
)

// serviceName is the service's name: its consumer group, its event source,
// its database role prefix and its default OTEL service name.
const serviceName = events.SourceShipping

// config is everything the shipping service reads from its environment. It
// has no settings of its own beyond the platform's (HTTP_ADDR defaults to
// :8084).
type config struct {
	Platform platform.Config
}

func loadConfig(getenv func(string) string) (config, error) {
	pc, err := platform.ParseConfig(getenv, serviceName, ":8084")
	if err != nil {
		return config{}, fmt.Errorf("shipping config: %w", err)
	}
	return config{Platform: pc}, nil
}
