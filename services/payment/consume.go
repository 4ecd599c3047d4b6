package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// handlers maps the event types the payment service consumes to its use
// cases. Other types on its topics are skipped by the consumer.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypeOrderCreated:         s.onOrderCreated,
		events.TypeInventoryUnavailable: s.onInventoryUnavailable,
	}
}

// onOrderCreated charges the order. An event that does not decode, or
// whose order id is no UUID or whose total is negative, can never succeed:
// it is dead-lettered.
func (s *service) onOrderCreated(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	o, err := events.Decode[events.OrderCreated](e)
	if err != nil {
		return consumer.Permanent(err)
	}
	if _, err := uuid.Parse(o.OrderID); err != nil {
		return consumer.Permanent(fmt.Errorf("order id %q is not a UUID", o.OrderID))
	}
	if err := s.charge(ctx, tx, e, o); err != nil {
		if errors.Is(err, ErrInvalid) {
			return consumer.Permanent(err)
		}
		return err
	}
	return nil
}

// onInventoryUnavailable refunds the order's payment (compensation).
func (s *service) onInventoryUnavailable(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	u, err := events.Decode[events.InventoryUnavailable](e)
	if err != nil {
		return consumer.Permanent(err)
	}
	if _, err := uuid.Parse(u.OrderID); err != nil {
		return consumer.Permanent(fmt.Errorf("order id %q is not a UUID", u.OrderID))
	}
	return s.refundPayment(ctx, tx, e, u)
}
