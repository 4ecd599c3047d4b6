package main

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// handlers maps the event types shipping consumes to its use cases; the
// consumer reads the topics they travel on and skips other types.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypeInventoryReserved: s.onInventoryReserved,
		events.TypeOrderExpired:      s.onOrderExpired,
		events.TypeOrderCancelled:    s.onOrderCancelled,
	}
}

// onInventoryReserved ships the order. An event that does not decode, or
// whose order id is no UUID, can never succeed: it is dead-lettered.
func (s *service) onInventoryReserved(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	r, orderID, err := consumer.DecodeOrder[events.InventoryReserved](e)
	if err != nil {
		return err
	}
	return s.ship(ctx, tx, e, orderID, r.Items)
}

// onOrderExpired answers an order past its deadline: it stays shipped if it
// shipped, otherwise it will never ship and ShipmentCancelled says so.
func (s *service) onOrderExpired(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	x, orderID, err := consumer.DecodeOrder[events.OrderExpired](e)
	if err != nil {
		return err
	}
	return s.expire(ctx, tx, e, orderID, x.Deadline)
}

// onOrderCancelled records that the cancelled order will never ship.
func (s *service) onOrderCancelled(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	c, orderID, err := consumer.DecodeOrder[events.OrderCancelled](e)
	if err != nil {
		return err
	}
	return s.cancel(ctx, tx, orderID, c.Reason)
}
