package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// handlers maps the event types shipping consumes to its use cases.
func (s *service) handlers() map[string]consumer.Handler {
	return map[string]consumer.Handler{
		events.TypeInventoryReserved: s.onInventoryReserved,
	}
}

func (s *service) onInventoryReserved(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
	r, err := events.Decode[events.InventoryReserved](e)
	if err != nil {
		return consumer.Permanent(err)
	}
	orderID, ok := parseOrderID(r.OrderID)
	if !ok {
		return consumer.Permanent(fmt.Errorf("%s %s: order id %q is not a UUID", e.Type, e.ID, r.OrderID))
	}
	items := make([]Item, len(r.Items))
	for i, it := range r.Items {
		items[i] = Item{SKU: it.SKU, Quantity: it.Quantity}
	}
	return s.ship(ctx, tx, e, orderID, items)
}
