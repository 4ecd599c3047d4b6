// Command email is Sagashop's email service. It tells customers about the
// transitions of their orders they can see: shipped and cancelled. It owns
// the recipients of orders and the emails sent about them.
//
// It consumes orders.events and shipping.events in consumer group "email":
// OrderCreated tells it whom to write to, OrderShipped and OrderCancelled
// what to write. It emits CustomerNotified on email.events for every email
// sent, in the same transaction that records it (transactional outbox).
//
// The two topics are read independently, so OrderShipped can arrive before
// the OrderCreated of its order (after downtime, say). Such an email is
// recorded as pending and sent, in the same transaction, when OrderCreated
// arrives. Neither event is held up or failed for it.
//
// Guarantees: an order gets at most one email of each kind, however often
// and under however many event ids its events arrive (a primary key on order
// and kind). With SMTP_ADDR set, an email is delivered over SMTP before its
// transaction commits, so delivery to the mail server is at-least-once: a
// crash between delivery and commit sends it again on redelivery. A mail
// server that is down or refuses (4xx, or 5xx to anything but the recipient)
// holds up the event, and those behind it on its partition: it is retried in
// place until the server accepts. Only a permanent refusal of the
// recipient's address (550, 551 or 553 to RCPT TO) dead-letters it.
//
// HTTP: GET /emails?order_id={id}.
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
	p.Logger.Info("email settings", "email", cfg)
	var sender Sender
	if cfg.SMTPAddr != "" {
		sender = newSMTPSender(cfg.SMTPAddr, cfg.SMTPFrom)
	}
	s, err := newService(p.Pool, p.Logger, sender, p.Registry)
	if err != nil {
		return err
	}
	return p.Run(ctx, platform.Parts{
		Routes:   s.routes,
		Handlers: s.handlers(),
	})
}
