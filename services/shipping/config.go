package main

import (
	"fmt"

	"github.com/sagashop/sagashop/pkg/platform"
)

// config is everything the shipping service reads from its environment. It
// has no settings of its own beyond the platform's (HTTP_ADDR defaults to
// :8084).
type config struct {
	Platform platform.Config
}

func loadConfig(getenv func(string) string) (config, error) {
	pc, err := platform.ParseConfig(getenv, "shipping", ":8084")
	if err != nil {
		return config{}, fmt.Errorf("shipping config: %w", err)
	}
	return config{Platform: pc}, nil
}
