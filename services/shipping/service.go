package main

import (
	"context"
	"fmt"
	"log/slog"
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

// service holds the shipping use cases and what they need.
type service struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	// The counters count once the transaction has committed
	// (consumer.AfterCommit), so a retried attempt never counts twice.
	shipped   prometheus.Counter     // orders shipped
	refused   prometheus.Counter     // InventoryReserved of orders that will never ship
	cancelled *prometheus.CounterVec // tombstones recorded, by reason
}

func newService(pool *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer) (*service, error) {
	s := &service{
		pool:   pool,
		logger: logger,
		shipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shipments_total",
			Help: "Orders shipped.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shipments_refused_total",
			Help: "InventoryReserved events of orders that will never ship (expired or cancelled first): nothing shipped.",
		}),
		cancelled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shipments_cancelled_total",
			Help: "Orders recorded as never to ship, by reason: timed_out (OrderExpired, answered with ShipmentCancelled) or the reason of an OrderCancelled that came first.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{s.shipped, s.refused, s.cancelled} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register shipping metrics: %w", err)
		}
	}
	s.cancelled.WithLabelValues(events.ReasonTimedOut)
	return s, nil
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
// event id) ships nothing; one that will never ship (a tombstone: it
// expired or was cancelled first) ships nothing either, and emits nothing:
// inventory releases the reservation on the order's OrderCancelled.
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
		status, err := shipmentStatus(ctx, tx, orderID)
		if err != nil {
			return err
		}
		switch status {
		case StatusShipped:
			s.logger.InfoContext(ctx, "order already shipped, nothing to do")
			return nil
		case StatusCancelled:
			consumer.AfterCommit(ctx, s.refused.Inc)
			s.logger.InfoContext(ctx, "order will never ship, nothing shipped")
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

// expire is the pivot's answer to OrderExpired, inside tx: an order that
// has shipped keeps its shipment (its OrderShipped is in the outbox, and it
// will end SHIPPED), and nothing is emitted; any other order is recorded as
// never to ship (a tombstone) and ShipmentCancelled{timed_out} is emitted,
// on which the order service cancels it. The order's row in shipments is
// the lock: this insert and ship's wait for each other on its primary key,
// so exactly one of them happens. An order already recorded as never to
// ship is left alone (its ShipmentCancelled, or its cancellation, is out).
func (s *service) expire(ctx context.Context, tx pgx.Tx, cause events.Envelope, orderID uuid.UUID, deadline time.Time) error {
	inserted, err := insertTombstone(ctx, tx, orderID, events.ReasonTimedOut)
	if err != nil {
		return err
	}
	if !inserted {
		status, err := shipmentStatus(ctx, tx, orderID)
		if err != nil {
			return err
		}
		if status == StatusShipped {
			s.logger.InfoContext(ctx, "expired order already shipped, it stays shipped", "deadline", deadline)
		} else {
			s.logger.InfoContext(ctx, "expired order already recorded as never to ship, event ignored", telemetry.LogStatus, status)
		}
		return nil
	}
	err = outbox.Emit(ctx, tx, serviceName, cause, events.ShipmentCancelled{OrderID: orderID.String(), Reason: events.ReasonTimedOut})
	if err != nil {
		return err
	}
	consumer.AfterCommit(ctx, s.cancelled.WithLabelValues(events.ReasonTimedOut).Inc)
	s.logger.InfoContext(ctx, "expired order will never ship, shipment cancelled", "deadline", deadline)
	return nil
}

// cancel records, inside tx, on OrderCancelled (any reason), that the
// order will never ship, so that a late InventoryReserved ships nothing.
// An order with a shipment or a tombstone already is left alone: a
// shipped order is never cancelled (shipping is the pivot), so that one is
// logged as an error.
func (s *service) cancel(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, reason string) error {
	inserted, err := insertTombstone(ctx, tx, orderID, reason)
	if err != nil {
		return err
	}
	if inserted {
		consumer.AfterCommit(ctx, s.cancelled.WithLabelValues(reason).Inc)
		s.logger.InfoContext(ctx, "cancelled order will never ship", telemetry.LogReason, reason)
		return nil
	}
	status, err := shipmentStatus(ctx, tx, orderID)
	if err != nil {
		return err
	}
	if status == StatusShipped {
		s.logger.ErrorContext(ctx, "shipped order cancelled, the shipment stands", telemetry.LogReason, reason)
		return nil
	}
	s.logger.InfoContext(ctx, "cancelled order already recorded as never to ship, event ignored", telemetry.LogReason, reason)
	return nil
}
