// Command shipping is Sagashop's shipping service. It owns shipments: one per
// order, with a tracking number, created when the order's stock is reserved.
//
// It consumes inventory.events in consumer group "shipping" and ships the
// order of every InventoryReserved, emitting OrderShipped on shipping.events
// in the same transaction as the shipment (transactional outbox).
//
// Guarantees: events arrive at least once and are applied once per event id
// (the consumer's inbox); shipping is also idempotent by state, so an order
// ships exactly once however many times, and under however many event ids,
// its reservation arrives.
//
// HTTP: GET /shipments/{order_id}.
package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sagashop/sagashop/pkg/platform"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	p, err := platform.Start(ctx, cfg.Platform, stdout, migrationsFS)
	if err != nil {
		return err
	}
	defer p.Close()
	s, err := newService(p.Pool, p.Logger, p.Registry)
	if err != nil {
		return err
	}
	return p.Run(ctx, platform.Parts{
		Routes:   s.routes,
		Handlers: s.handlers(),
	})
}
