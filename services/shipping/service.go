package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
)

const serviceName = "shipping"

// service holds the shipping use cases and what they need.
type service struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	shipped prometheus.Counter
}

func newService(pool *pgxpool.Pool, log *slog.Logger, reg prometheus.Registerer) *service {
	s := &service{
		pool: pool,
		log:  log,
		// Counted when ship hands its transaction back to the consumer: a
		// commit that fails after that is counted again on its retry.
		shipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shipments_total",
			Help: "Orders shipped.",
		}),
	}
	reg.MustRegister(s.shipped)
	return s
}

// maxTrackingAttempts bounds the retries after a tracking-number collision,
// which at 36^12 values should never need a second one.
const maxTrackingAttempts = 3

// ship ships an order whose stock is reserved, inside tx (the consumer's
// transaction, which also records cause in the inbox): it stores the
// shipment with a fresh tracking number and writes OrderShipped to the
// outbox. An order that already has a shipment is left alone, so a second
// reservation event for the same order (under a new event id) ships nothing.
func (s *service) ship(ctx context.Context, tx pgx.Tx, cause events.Envelope, orderID uuid.UUID, items []Item) error {
	var sh Shipment
	for attempt := 1; ; attempt++ {
		tn, err := NewTrackingNumber()
		if err != nil {
			return err
		}
		sh = Shipment{OrderID: orderID.String(), TrackingNumber: tn, Status: StatusShipped, Items: items}
		// ON CONFLICT DO NOTHING also waits for a concurrent insert of the
		// same order and then yields to it, so two replicas never both ship.
		inserted, err := insertShipment(ctx, tx, sh)
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
			s.log.InfoContext(ctx, "order already shipped, nothing to do")
			return nil
		}
		if attempt == maxTrackingAttempts {
			return fmt.Errorf("ship %s: tracking number collided %d times", orderID, attempt)
		}
	}
	env, err := events.New(serviceName, events.OrderShipped{OrderID: sh.OrderID, TrackingNumber: sh.TrackingNumber})
	if err != nil {
		return err
	}
	if err := outbox.Write(ctx, tx, events.TopicShipping, env.CausedBy(cause)); err != nil {
		return err
	}
	s.shipped.Inc()
	s.log.InfoContext(ctx, "order shipped", "tracking_number", sh.TrackingNumber)
	return nil
}

// parseOrderID accepts an order id in the canonical 36-character UUID form
// (any case) and nothing else.
func parseOrderID(s string) (uuid.UUID, bool) {
	if len(s) != 36 {
		return uuid.UUID{}, false
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}
