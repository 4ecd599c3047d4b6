package main

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/web"
)

// handlers maps each event type the order service reacts to onto its use
// case; the consumer reads the topics they travel on. An event that can
// never apply (malformed, or for an order this service never created: the
// order row commits before OrderCreated is even written) fails permanently
// and is dead-lettered.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypeProductUpdated:    s.onProductUpdated,
		events.TypePaymentProcessed:  advanceOn[events.PaymentProcessed](s, StatusPaid, ""),
		events.TypeInventoryReserved: advanceOn[events.InventoryReserved](s, StatusReserved, ""),
		events.TypeOrderShipped:      advanceOn[events.OrderShipped](s, StatusShipped, ""),
		// cancelOrder, the compensation of a failed or refunded payment.
		events.TypePaymentFailed:   advanceOn[events.PaymentFailed](s, StatusCancelled, events.ReasonPaymentFailed),
		events.TypePaymentRefunded: advanceOn[events.PaymentRefunded](s, StatusCancelled, events.ReasonOutOfStock),
		// Shipping's answer to OrderExpired: the order will never ship, so
		// it is cancelled (from PENDING, PAID or RESERVED) and every
		// participant undoes what it holds on OrderCancelled.
		events.TypeShipmentCancelled: advanceOn[events.ShipmentCancelled](s, StatusCancelled, events.ReasonTimedOut),
	}
}

// onProductUpdated updates the catalog copy. A product that is no valid
// catalog entry never will be: it is dead-lettered.
func (s *service) onProductUpdated(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	p, err := consumer.Decode[events.ProductUpdated](e)
	if err != nil {
		return err
	}
	product := Product{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents}
	if err := product.Check(web.CheckID); err != nil {
		return consumer.Permanent(err)
	}
	return s.updateProduct(ctx, tx, e, product)
}

// advanceOn returns the handler of an event of type T (whose subject is the
// order id) that moves the order to status to, with reason.
func advanceOn[T events.Payload](s *service, to Status, reason string) consumer.Handler {
	return func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		_, id, err := consumer.DecodeOrder[T](e)
		if err != nil {
			return err
		}
		err = s.advance(ctx, tx, e, id, to, reason)
		if errors.Is(err, ErrNotFound) {
			return consumer.Permanent(err)
		}
		return err
	}
}
