// Command payment is Sagashop's payment service. It owns customer accounts
// (balances topped up by deposits) and the payment of each order.
//
// It consumes, in consumer group "payment":
//   - OrderCreated (orders.events): charge the order total to the customer's
//     balance, emitting PaymentProcessed or PaymentFailed;
//   - InventoryUnavailable (inventory.events): refundPayment, the compensation
//     of a charge, emitting PaymentRefunded (reason out_of_stock);
//   - OrderCancelled (orders.events, any reason): cancelPayment, undoing what
//     payment holds for the order: a charge not yet refunded is refunded
//     (refundPayment, PaymentRefunded with the cancellation's reason); with
//     no payment, a tombstone (a CANCELLED payment of nothing) is recorded,
//     so that a late OrderCreated (a dead letter replayed) charges nothing.
//
// It emits on payments.events, through its outbox, keyed by order id:
// PaymentProcessed, PaymentFailed and PaymentRefunded.
//
// Guarantees: each event is applied at most once per event id (inbox) and
// handlers are idempotent by state (one payment or tombstone per order, one
// refund per payment), so a business fact delivered twice under two ids has
// one effect; a balance never goes below zero, however many charges run at
// once; a charge and a cancellation of the same order racing each other end
// refunded or never charged, never charged for good.
//
// HTTP: POST /accounts/{customer_id}/deposits, GET /accounts/{customer_id},
// GET /payments/{order_id}.
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
