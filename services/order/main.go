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
// (OrderShipped → SHIPPED; ShipmentCancelled → CANCELLED "timed_out").
//
// Emits on orders.events: OrderCreated when an order is placed, in the same
// transaction; OrderCancelled when one is cancelled; OrderExpired when the
// sweeper (a background worker) finds an open order past its deadline
// (creation + SAGA_DEADLINE), in the transaction that marks it expired.
//
// Guarantees: an order's status only moves forward (PENDING → PAID →
// RESERVED → SHIPPED, or CANCELLED from PENDING or PAID, or from RESERVED
// when it timed out), whatever order events arrive in, so repeated and late
// events are harmless; a request repeated with the same Idempotency-Key
// creates one order, even when the repeats race; every order ends: one past
// its deadline is expired once, even with several replicas sweeping, and
// shipping (the one step that cannot be undone) decides whether it ships or
// is cancelled.
package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sagashop/sagashop/pkg/deadletter"
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
	p.Logger.Info("order settings", "order", cfg)
	s, err := newService(p.Pool, p.Logger, p.Registry, p.TracerProvider, cfg.SagaDeadline)
	if err != nil {
		return err
	}
	return p.Run(ctx, platform.Parts{
		Routes:   s.routes,
		Handlers: s.handlers(),
		Workers: map[string]func(context.Context) error{
			"sweeper": s.sweeper,
			// Every consumer group's dead letters, recorded for the orders
			// they concern (order_dead_letters), so GET /orders/{id} can say
			// an order is stuck on one.
			"dead-letter watch": func(ctx context.Context) error {
				return deadletter.Watch(ctx, deadletter.WatchConfig{
					Brokers: cfg.Platform.Brokers,
					Group:   serviceName + ".dlq-watch",
					Handle:  deadletter.Recorder(p.Pool),
					Logger:  p.Logger,
				})
			},
		},
	})
}
