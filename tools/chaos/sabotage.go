package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/events"
)

// sabotage checks the checker (-sabotage): once every order has ended, it
// breaks, behind the services' backs, one thing each invariant below guards,
// each on an order or row of its own so that no break shows in another
// invariant; the run then passes only if exactly these invariants fail.
// It returns their ids.
func sabotage(ctx context.Context, st *stack, h *history) (map[string]bool, error) {
	var shipped []*op
	for _, o := range h.ops {
		if o.Ack && o.Final == "SHIPPED" {
			shipped = append(shipped, o)
		}
	}
	if len(shipped) < 4 {
		return nil, fmt.Errorf("sabotage needs 4 shipped orders, the run has %d", len(shipped))
	}
	a, b, c, d := shipped[0], shipped[1], shipped[2], shipped[3]
	stmts := []struct {
		id, sql string
		args    []any
	}{
		{"charged", "UPDATE payment_svc.payments SET status = 'REFUNDED' WHERE order_id = $1", []any{a.ID}},
		{"shipments", "DELETE FROM shipping_svc.shipments WHERE order_id = $1", []any{b.ID}},
		{"emails", "DELETE FROM email_svc.emails WHERE order_id = $1", []any{c.ID}},
		{"money", "UPDATE payment_svc.accounts SET balance_cents = balance_cents - 1 WHERE customer_id = $1", []any{d.Customer}},
		{"stock", "UPDATE inventory_svc.products SET reserved = reserved + 1 WHERE sku = $1", []any{d.SKU}},
		{"outboxes", `INSERT INTO payment_svc.outbox_dead_letters (id, event_id, topic, key, envelope, created_at, reason, error)
			VALUES (-1, gen_random_uuid(), 'payments.events', 'sabotage', '{}', now(), 'sabotage', 'sabotage')`, nil},
		{"known", `INSERT INTO order_svc.orders (id, customer_id, email, status, reason, total_cents, currency, deadline)
			VALUES (gen_random_uuid(), 'chaos-sabotage', 'sabotage@example.com', 'CANCELLED', 'sabotage', 0, 'EUR', now())`, nil},
	}
	broken := map[string]bool{}
	for _, s := range stmts {
		tag, err := st.admin.Exec(ctx, s.sql, s.args...)
		if err != nil {
			return nil, fmt.Errorf("sabotage %s: %w", s.id, err)
		}
		if tag.RowsAffected() != 1 {
			return nil, fmt.Errorf("sabotage %s: %d rows changed, want 1", s.id, tag.RowsAffected())
		}
		broken[s.id] = true
	}
	w := &kafka.Writer{Addr: kafka.TCP(st.brokers()...), Topic: events.DeadLetterTopic(events.SourceOrder), RequiredAcks: kafka.RequireAll}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := w.WriteMessages(wctx, kafka.Message{Key: []byte("chaos-sabotage"), Value: []byte("sabotage")})
	cancel()
	if err := errors.Join(err, w.Close()); err != nil {
		return nil, fmt.Errorf("sabotage deadletters: %w", err)
	}
	broken["deadletters"] = true
	// A request the history says was refused.
	h.mu.Lock()
	h.ops[0].Rejected = true
	h.ops[0].Attempts = append(h.ops[0].Attempts, try{Status: 400, Error: "sabotage"})
	h.mu.Unlock()
	broken["answered"] = true
	return broken, nil
}
