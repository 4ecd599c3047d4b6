package main

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// handlers maps the event types the payment service consumes to its use
// cases; the consumer reads the topics they travel on and skips other types.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypeOrderCreated:         s.onOrderCreated,
		events.TypeInventoryUnavailable: s.onInventoryUnavailable,
		events.TypeOrderCancelled:       s.onOrderCancelled,
	}
}

// onOrderCreated charges the order. An event that does not decode, whose
// order id is no UUID or whose total is negative can never succeed: it is
// dead-lettered.
func (s *service) onOrderCreated(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	o, _, err := consumer.DecodeOrder[events.OrderCreated](e)
	if err != nil {
		return err
	}
	err = s.charge(ctx, tx, e, o)
	if errors.Is(err, ErrInvalid) {
		return consumer.Permanent(err)
	}
	return err
}

// onInventoryUnavailable refunds the order's payment (compensation).
func (s *service) onInventoryUnavailable(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	u, _, err := consumer.DecodeOrder[events.InventoryUnavailable](e)
	if err != nil {
		return err
	}
	return s.refundOutOfStock(ctx, tx, e, u)
}

// onOrderCancelled undoes what payment holds for the cancelled order
// (compensation): its charge is refunded, or a tombstone keeps a late
// OrderCreated from charging it.
func (s *service) onOrderCancelled(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	c, _, err := consumer.DecodeOrder[events.OrderCancelled](e)
	if err != nil {
		return err
	}
	return s.cancelPayment(ctx, tx, e, c)
}
