package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// service holds the email use cases and what they need.
type service struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	sender Sender // nil: emails are recorded as sent, not delivered
	// sent counts the emails recorded as sent, by kind, once their
	// transaction has committed (consumer.AfterCommit): it follows the
	// emails table, so a retried attempt never counts twice. Delivery to the
	// mail server is at-least-once (see send): an attempt that delivers and
	// then fails to commit is not counted, its redelivery is.
	sent *prometheus.CounterVec
}

func newService(pool *pgxpool.Pool, logger *slog.Logger, sender Sender, reg prometheus.Registerer) (*service, error) {
	s := &service{
		pool:   pool,
		logger: logger,
		sender: sender,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "emails_sent_total",
			Help: "Emails sent to customers, by kind.",
		}, []string{"kind"}),
	}
	for _, k := range []string{KindOrderShipped, KindOrderCancelled} {
		s.sent.WithLabelValues(k)
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "emails_pending",
		Help: "Emails waiting for their order's recipient (OrderCreated not seen yet); read from the database on scrape.",
	}, s.pendingGauge)
	for _, c := range []prometheus.Collector{s.sent, pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register email metrics: %w", err)
		}
	}
	return s, nil
}

// sentEmails returns the emails sent about an order, in the order they were
// sent.
func (s *service) sentEmails(ctx context.Context, orderID uuid.UUID) ([]SentEmail, error) {
	return sentEmails(ctx, s.pool, orderID)
}

// pendingGauge counts pending emails for a scrape; NaN when the database
// does not answer.
func (s *service) pendingGauge() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := countPending(ctx, s.pool)
	if err != nil {
		s.logger.Warn("emails_pending not refreshed", telemetry.Err(err))
		return math.NaN()
	}
	return float64(n)
}

// rememberRecipient stores whom to write to about an order, inside tx (the
// consumer's transaction for cause, an OrderCreated), and sends every email
// of the order that was waiting for it, in the same transaction.
func (s *service) rememberRecipient(ctx context.Context, tx pgx.Tx, cause events.Envelope, orderID uuid.UUID, r Recipient) error {
	if err := lockOrder(ctx, tx, orderID); err != nil {
		return err
	}
	if err := upsertRecipient(ctx, tx, orderID, r); err != nil {
		return err
	}
	pending, err := pendingEmails(ctx, tx, orderID)
	if err != nil {
		return err
	}
	for _, m := range pending {
		if err := s.send(ctx, tx, cause, orderID, m, r.Email); err != nil {
			return err
		}
	}
	return nil
}

// notify records that the customer must be told m about an order, inside tx
// (the consumer's transaction for cause), and sends it if the recipient is
// known. Otherwise the email stays pending until OrderCreated arrives: the
// orders and shipping topics are read independently, so OrderShipped can
// come first. An order gets at most one email of each kind, however many
// events say the same thing.
func (s *service) notify(ctx context.Context, tx pgx.Tx, cause events.Envelope, orderID uuid.UUID, m Message) error {
	if err := lockOrder(ctx, tx, orderID); err != nil {
		return err
	}
	inserted, err := insertEmail(ctx, tx, orderID, m)
	if err != nil {
		return err
	}
	if !inserted {
		s.logger.InfoContext(ctx, "email already recorded, nothing to do", "kind", m.Kind)
		return nil
	}
	r, err := getRecipient(ctx, tx, orderID)
	if errors.Is(err, ErrNotFound) {
		s.logger.InfoContext(ctx, "email pending until the order's recipient is known", "kind", m.Kind)
		return nil
	}
	if err != nil {
		return err
	}
	return s.send(ctx, tx, cause, orderID, m, r.Email)
}

// send marks the pending email m as sent to to, writes CustomerNotified to
// the outbox and, with a mail server configured, delivers it, all before tx
// commits. A delivery failure fails the transaction, so nothing is recorded.
// It is transient (consumer.ErrTransient: retried in place until the mail
// server accepts, never dead-lettered), except a permanent refusal of the
// address (ErrRecipientRejected), which is permanent (consumer.ErrPermanent):
// retrying it would hold up every event behind it forever, so the event is
// dead-lettered instead; for an OrderCreated that leaves the recipient
// unknown and the order's emails pending. A crash or failed commit after
// delivery sends the email again on redelivery: delivery to the mail server
// is at-least-once; the record is exactly one row per kind, and
// emails_sent_total, counted after commit, follows the record.
func (s *service) send(ctx context.Context, tx pgx.Tx, cause events.Envelope, orderID uuid.UUID, m Message, to string) error {
	if err := markSent(ctx, tx, orderID, m.Kind, to); err != nil {
		return err
	}
	if err := outbox.Emit(ctx, tx, serviceName, cause, events.CustomerNotified{OrderID: orderID.String(), Kind: m.Kind}); err != nil {
		return err
	}
	// Deliver last: a database error above must not cost a duplicate email.
	if s.sender != nil {
		if err := s.sender.Send(ctx, to, m.Subject, m.Body); err != nil {
			err = fmt.Errorf("deliver %s email of %s: %w", m.Kind, orderID, err)
			if errors.Is(err, ErrRecipientRejected) {
				return consumer.Permanent(err)
			}
			return consumer.Transient(err)
		}
	}
	consumer.AfterCommit(ctx, s.sent.WithLabelValues(m.Kind).Inc)
	s.logger.InfoContext(ctx, "customer notified", "kind", m.Kind, "delivered", s.sender != nil)
	return nil
}
