// Command order is Sagashop's order service: it owns orders and starts the
// saga. It keeps its own copy of the catalog, so prices come from it and no
// call to another service is needed to place an order.
//
// HTTP: POST /orders places an order (idempotent with an Idempotency-Key
// header), GET /orders/{id} reads one.
//
// Consumes (group "order"): inventory.events (ProductUpdated → upsert the
// catalog copy; InventoryReserved → RESERVED), payments.events
// (PaymentProcessed → PAID; PaymentFailed → CANCELLED "payment_failed";
// PaymentRefunded → CANCELLED "out_of_stock") and shipping.events
// (OrderShipped → SHIPPED).
//
// Emits on orders.events: OrderCreated when an order is placed, in the same
// transaction, and OrderCancelled when one is cancelled.
//
// Guarantees: an order's status only moves forward (PENDING → PAID →
// RESERVED → SHIPPED, or CANCELLED from PENDING or PAID), whatever order
// events arrive in, so repeated and late events are harmless; a request
// repeated with the same Idempotency-Key creates one order, even when the
// repeats race.
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
