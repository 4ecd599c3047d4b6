// Command shipping is Sagashop's shipping service. It owns shipments: one per
// order, with a tracking number, created when the order's stock is reserved.
// Shipping is the saga's pivot, the one step that cannot be undone, so it
// also decides, and records, that an order will never ship.
//
// It consumes, in consumer group "shipping":
//   - InventoryReserved (inventory.events): ship the order, emitting
//     OrderShipped in the same transaction as the shipment (transactional
//     outbox); an order recorded as never to ship ships nothing;
//   - OrderExpired (orders.events): the pivot's answer to an order past its
//     deadline. A shipped order stays shipped (its OrderShipped is out);
//     any other is recorded as never to ship (a tombstone) and
//     ShipmentCancelled{reason timed_out} is emitted on shipping.events;
//   - OrderCancelled (orders.events, any reason): record a tombstone if there
//     is nothing yet, so that a late InventoryReserved ships nothing.
//
// Guarantees: events arrive at least once and are applied once per event id
// (the consumer's inbox); shipping is also idempotent by state, so an order
// ships exactly once however many times, and under however many event ids,
// its reservation arrives. A shipment and a tombstone share the order's
// primary key, so for an order whose expiry races its reservation exactly
// one of OrderShipped and ShipmentCancelled is ever emitted.
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
