package main

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// handlers maps the event types the inventory service consumes to its use
// cases; the consumer reads the topics they travel on and skips other types.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypePaymentProcessed: s.onPaymentProcessed,
		events.TypeOrderShipped:     s.onOrderShipped,
		events.TypeOrderCancelled:   s.onOrderCancelled,
	}
}

// onPaymentProcessed reserves the paid order's items. An event that does
// not decode, or whose order id is no UUID, can never succeed: it is
// dead-lettered. Order lines that make no sense (a quantity out of range)
// are not: they cannot be reserved, so the order is rejected and refunded.
func (s *service) onPaymentProcessed(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	paid, _, err := consumer.DecodeOrder[events.PaymentProcessed](e)
	if err != nil {
		return err
	}
	return s.reserve(ctx, tx, e, paid)
}

// onOrderShipped releases the shipped order's reservation.
func (s *service) onOrderShipped(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	shipped, _, err := consumer.DecodeOrder[events.OrderShipped](e)
	if err != nil {
		return err
	}
	return s.releaseReservation(ctx, tx, shipped)
}

// onOrderCancelled releases the cancelled order's reservation
// (compensation), or records a tombstone so that a late PaymentProcessed
// reserves nothing.
func (s *service) onOrderCancelled(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	c, _, err := consumer.DecodeOrder[events.OrderCancelled](e)
	if err != nil {
		return err
	}
	return s.cancelReservation(ctx, tx, c)
}
