package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// handlers maps the event types email consumes to its use cases; the
// consumer reads the topics they travel on and skips other types.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypeOrderCreated:   s.onOrderCreated,
		events.TypeOrderShipped:   s.onOrderShipped,
		events.TypeOrderCancelled: s.onOrderCancelled,
	}
}

// onOrderCreated remembers the order's recipient. An event that does not
// decode, whose order id is no UUID or whose address is no bare address
// can never succeed: it is dead-lettered.
func (s *service) onOrderCreated(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	p, orderID, err := consumer.DecodeOrder[events.OrderCreated](e)
	if err != nil {
		return err
	}
	if err := CheckAddress(p.Email); err != nil {
		return consumer.Permanent(fmt.Errorf("%s %s: %w", e.Type, e.ID, err))
	}
	return s.rememberRecipient(ctx, tx, e, orderID, Recipient{OrderID: orderID.String(), CustomerID: p.CustomerID, Email: p.Email})
}

func (s *service) onOrderShipped(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	p, orderID, err := consumer.DecodeOrder[events.OrderShipped](e)
	if err != nil {
		return err
	}
	return s.notify(ctx, tx, e, orderID, ShippedEmail(orderID.String(), p.TrackingNumber))
}

func (s *service) onOrderCancelled(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	p, orderID, err := consumer.DecodeOrder[events.OrderCancelled](e)
	if err != nil {
		return err
	}
	return s.notify(ctx, tx, e, orderID, CancelledEmail(orderID.String(), p.Reason, explanations[p.Reason]))
}

// explanations say what the saga's cancellation reasons mean for the
// customer; an email about any other reason only quotes it.
var explanations = map[string]string{
	events.ReasonPaymentFailed: "We could not take the payment for it; nothing was charged.",
	events.ReasonOutOfStock:    "An item in it was out of stock; your payment has been refunded.",
	events.ReasonTimedOut:      "It could not be completed in time; any payment for it has been refunded, and nothing will ship.",
}
