package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/web"
)

// handlers maps each event type the order service reacts to onto its use
// case. An event that can never apply (malformed, or for an order this
// service never created: the order row commits before OrderCreated is even
// written) fails permanently and is dead-lettered.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypeProductUpdated: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			p, err := events.Decode[events.ProductUpdated](e)
			if err != nil {
				return consumer.Permanent(err)
			}
			product := Product{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents}
			if err := product.Check(web.CheckID); err != nil {
				return consumer.Permanent(err)
			}
			return s.updateProduct(ctx, tx, e, product)
		},
		events.TypePaymentProcessed:  advanceOn[events.PaymentProcessed](s, StatusPaid, ""),
		events.TypeInventoryReserved: advanceOn[events.InventoryReserved](s, StatusReserved, ""),
		events.TypeOrderShipped:      advanceOn[events.OrderShipped](s, StatusShipped, ""),
		// cancelOrder, the compensation of a failed or refunded payment.
		events.TypePaymentFailed:   advanceOn[events.PaymentFailed](s, StatusCancelled, ReasonPaymentFailed),
		events.TypePaymentRefunded: advanceOn[events.PaymentRefunded](s, StatusCancelled, ReasonOutOfStock),
	}
}

// advanceOn returns the handler of an event of type T (whose subject is the
// order id) that moves the order to status to, with reason.
func advanceOn[T events.Payload](s *service, to Status, reason string) consumer.Handler {
	return func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		p, err := events.Decode[T](e)
		if err != nil {
			return consumer.Permanent(err)
		}
		id, err := uuid.Parse(p.Subject())
		if err != nil {
			return consumer.Permanent(fmt.Errorf("%s: order id %.80q is not a UUID", e.Type, p.Subject()))
		}
		err = s.advance(ctx, tx, e, id, to, reason)
		if errors.Is(err, ErrNotFound) {
			return consumer.Permanent(fmt.Errorf("%s for order %s: %w", e.Type, id, err))
		}
		return err
	}
}
