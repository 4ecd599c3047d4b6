package main

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// handlers maps the event types email consumes to its use cases.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypeOrderCreated:   s.onOrderCreated,
		events.TypeOrderShipped:   s.onOrderShipped,
		events.TypeOrderCancelled: s.onOrderCancelled,
	}
}

func (s *service) onOrderCreated(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	p, err := events.Decode[events.OrderCreated](e)
	if err != nil {
		return consumer.Permanent(err)
	}
	orderID, err := eventOrderID(e, p.OrderID)
	if err != nil {
		return err
	}
	if err := CheckAddress(p.Email); err != nil {
		return consumer.Permanent(fmt.Errorf("%s %s: %w", e.Type, e.ID, err))
	}
	return s.rememberRecipient(ctx, tx, e, orderID, Recipient{OrderID: orderID.String(), CustomerID: p.CustomerID, Email: p.Email})
}

func (s *service) onOrderShipped(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	p, err := events.Decode[events.OrderShipped](e)
	if err != nil {
		return consumer.Permanent(err)
	}
	orderID, err := eventOrderID(e, p.OrderID)
	if err != nil {
		return err
	}
	return s.notify(ctx, tx, e, orderID, ShippedEmail(orderID.String(), p.TrackingNumber))
}

func (s *service) onOrderCancelled(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	p, err := events.Decode[events.OrderCancelled](e)
	if err != nil {
		return consumer.Permanent(err)
	}
	orderID, err := eventOrderID(e, p.OrderID)
	if err != nil {
		return err
	}
	return s.notify(ctx, tx, e, orderID, CancelledEmail(orderID.String(), p.Reason))
}

// eventOrderID parses the order id of an event's payload; one that is not a
// UUID never will be, so the error is permanent.
func eventOrderID(e events.Envelope, s string) (uuid.UUID, error) {
	id, ok := parseOrderID(s)
	if !ok {
		return uuid.UUID{}, consumer.Permanent(fmt.Errorf("%s %s: order id %q is not a UUID", e.Type, e.ID, truncate(s, 64)))
	}
	return id, nil
}
