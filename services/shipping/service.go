package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
)

// service holds the shipping use cases and what they need.
type service struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	// shipped counts orders shipped, once their transaction has committed
	// (consumer.AfterCommit), so a retried attempt never counts twice.
	shipped prometheus.Counter
}

func newService(pool *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer) (*service, error) {
	shipped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shipments_total",
		Help: "Orders shipped.",
	})
	if err := reg.Register(shipped); err != nil {
		return nil, fmt.Errorf("register shipping metrics: %w", err)
	}
	return &service{pool: pool, logger: logger, shipped: shipped}, nil
}

// shipment returns the shipment of an order, or ErrNotFound.
func (s *service) shipment(ctx context.Context, orderID uuid.UUID) (Shipment, error) {
	return getShipment(ctx, s.pool, orderID)
}

// maxTrackingAttempts bounds the retries after a tracking-number collision,
// which at 36^12 values should never need a second one.
const maxTrackingAttempts = 3

// ship ships an order whose stock is reserved, inside tx (the consumer's
// transaction, which also records cause in the inbox): it stores the
// shipment and the order's items with a fresh tracking number and writes
// OrderShipped to the outbox. An order that already has a shipment is left
// alone, so a second reservation event for the same order (under a new
// event id) ships nothing.
func (s *service) ship(ctx context.Context, tx pgx.Tx, cause events.Envelope, orderID uuid.UUID, items []events.Item) error {
	var sh Shipment
	for attempt := 1; ; attempt++ {
		tn, err := NewTrackingNumber()
		if err != nil {
			return err
		}
		sh = Shipment{OrderID: orderID.String(), TrackingNumber: tn, Status: StatusShipped}
		// ON CONFLICT DO NOTHING also waits for a concurrent insert of the
		// same order and then yields to it, so two replicas never both ship.
		inserted, err := insertShipment(ctx, tx, sh, items)
		if err != nil {
			return err
		}
		if inserted {
			break
		}
		exists, err := shipmentExists(ctx, tx, orderID)
		if err != nil {
			return err
		}
		if exists {
			s.logger.InfoContext(ctx, "order already shipped, nothing to do")
			return nil
		}
		if attempt == maxTrackingAttempts {
			return fmt.Errorf("ship %s: tracking number collided %d times", orderID, attempt)
		}
	}
	err := outbox.Emit(ctx, tx, serviceName, cause, events.OrderShipped{OrderID: sh.OrderID, TrackingNumber: sh.TrackingNumber})
	if err != nil {
		return err
	}
	consumer.AfterCommit(ctx, s.shipped.Inc)
	s.logger.InfoContext(ctx, "order shipped", "tracking_number", sh.TrackingNumber)
	return nil
}
