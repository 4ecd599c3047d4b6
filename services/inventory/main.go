// Command inventory is Sagashop's inventory service. It owns the product
// catalog (name, price) and the stock of each product: how many units are
// available and how many are reserved for paid orders not yet shipped.
//
// It consumes, in consumer group "inventory":
//   - PaymentProcessed (payments.events): reserve every item of the order or
//     none, emitting InventoryReserved or InventoryUnavailable;
//   - OrderShipped (shipping.events): releaseReservation, the reserved units
//     left the warehouse;
//   - OrderCancelled (orders.events, any reason): cancelReservation, the
//     compensation of a reservation: one not yet shipped is released (its
//     units back from reserved to available, the reservation RELEASED);
//     with none, a tombstone (a CANCELLED reservation of nothing) is
//     recorded, so that a late PaymentProcessed reserves nothing. It emits
//     nothing.
//
// It emits on inventory.events, through its outbox: ProductUpdated (keyed
// by SKU) whenever a product is created or replaced, and InventoryReserved
// and InventoryUnavailable (keyed by order id).
//
// Guarantees: each event is applied at most once per event id (inbox) and
// handlers are idempotent by state (one reservation or tombstone per
// order), so a business fact delivered twice under two ids has one effect;
// stock is never oversold, however many reservations run at once; and
// PaymentProcessed and OrderCancelled, which travel on different topics,
// leave the stock as it was in either order of arrival, or racing.
//
// HTTP: PUT /products/{sku}, GET /products/{sku}.
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
var migrationFiles embed.FS

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
	p, err := platform.Start(ctx, cfg.Platform, stdout, migrationFiles)
	if err != nil {
		return err
	}
	defer p.Close()
	svc, err := newService(p.Pool, p.Logger, p.Registry)
	if err != nil {
		return err
	}
	return p.Run(ctx, platform.Parts{
		Routes:   svc.routes,
		Handlers: svc.handlers(),
	})
}
