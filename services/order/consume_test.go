package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// handle runs the service's handler for ev in a transaction of its own, as
// the consumer would, and commits it unless the handler fails.
func (e *env) handle(ev events.Envelope) error {
	e.t.Helper()
	return e.Apply(e.t, ev)
}

// mustHandle is handle for an event that must apply.
func (e *env) mustHandle(ev events.Envelope) {
	e.t.Helper()
	if err := e.handle(ev); err != nil {
		e.t.Fatalf("handle %s: %v", ev.Type, err)
	}
}

// event wraps p in a fresh envelope from source.
func (e *env) event(source string, p events.Payload) events.Envelope {
	e.t.Helper()
	return servicetest.Event(e.t, source, p)
}

// placed creates a PENDING order for c-1 and returns its id.
func (e *env) placed() string {
	e.t.Helper()
	o, _, err := e.svc.placeOrder(e.ctx, "", NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{SKU: "mug", Quantity: 2}}})
	if err != nil {
		e.t.Fatal(err)
	}
	return o.ID.String()
}

func (e *env) paid(id string) events.Envelope {
	return e.event("payment", events.PaymentProcessed{OrderID: id, CustomerID: "c-1", AmountCents: 2500, Items: []events.Item{{SKU: "mug", Quantity: 2, UnitPriceCents: 1250}}})
}

func (e *env) reserved(id string) events.Envelope {
	return e.event("inventory", events.InventoryReserved{OrderID: id, Items: []events.Item{{SKU: "mug", Quantity: 2, UnitPriceCents: 1250}}})
}

func (e *env) shipped(id string) events.Envelope {
	return e.event("shipping", events.OrderShipped{OrderID: id, TrackingNumber: "TRK-1"})
}

func (e *env) paymentFailed(id string) events.Envelope {
	return e.event("payment", events.PaymentFailed{OrderID: id, CustomerID: "c-1", AmountCents: 2500, Reason: "insufficient_funds"})
}

func (e *env) refunded(id string) events.Envelope {
	return e.event("payment", events.PaymentRefunded{OrderID: id, CustomerID: "c-1", AmountCents: 2500, Reason: "out_of_stock"})
}

func (e *env) assertStatus(id string, want Status, wantReason string) {
	e.t.Helper()
	got, reason := e.status(id)
	if got != want || reason != wantReason {
		e.t.Errorf("order %s is %s %q, want %s %q", id, got, reason, want, wantReason)
	}
}

// cancellations returns the OrderCancelled events in the outbox for id.
func (e *env) cancellations(id string) []events.OrderCancelled {
	e.t.Helper()
	var out []events.OrderCancelled
	for _, r := range e.outbox(events.TypeOrderCancelled) {
		c, err := events.Decode[events.OrderCancelled](r.Envelope)
		if err != nil {
			e.t.Fatal(err)
		}
		if c.OrderID == id {
			out = append(out, c)
		}
	}
	return out
}

func TestHappySaga(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	id := e.placed()

	e.mustHandle(e.paid(id))
	e.assertStatus(id, StatusPaid, "")
	e.mustHandle(e.reserved(id))
	e.assertStatus(id, StatusReserved, "")
	e.mustHandle(e.shipped(id))
	e.assertStatus(id, StatusShipped, "")

	if n := len(e.outbox(events.TypeOrderCancelled)); n != 0 {
		t.Errorf("%d OrderCancelled for a shipped order", n)
	}
	if got := servicetest.Metric(t, e.Registry, "saga_orders_total", "outcome", "shipped", "reason", ""); got != 1 {
		t.Errorf("saga_orders_total{shipped} = %v, want 1", got)
	}
	if got := e.histogramCount("saga_duration_seconds"); got != 1 {
		t.Errorf("saga_duration_seconds count = %d, want 1", got)
	}

	// GET shows the new status and a later updated_at.
	rec := e.do("GET", "/orders/"+id, "")
	got, _ := decodeBody(t, rec)
	if got.Status != "SHIPPED" || got.UpdatedAt <= got.CreatedAt || got.Reason != "" {
		t.Errorf("GET = %+v", got)
	}
}

func TestCancelOrder(t *testing.T) {
	tests := []struct {
		name   string
		before func(e *env, id string) // brings the order to its starting status
		cancel func(e *env, id string) events.Envelope
		reason string
	}{
		{"payment failed on a pending order", func(*env, string) {}, (*env).paymentFailed, events.ReasonPaymentFailed},
		{"refund of a paid order", func(e *env, id string) { e.mustHandle(e.paid(id)) }, (*env).refunded, events.ReasonOutOfStock},
		{"refund before the payment was seen", func(*env, string) {}, (*env).refunded, events.ReasonOutOfStock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.product("mug", 1250)
			id := e.placed()
			tt.before(e, id)
			cause := tt.cancel(e, id)
			e.mustHandle(cause)
			e.assertStatus(id, StatusCancelled, tt.reason)

			rows := e.outbox(events.TypeOrderCancelled)
			if len(rows) != 1 {
				t.Fatalf("%d OrderCancelled in the outbox, want 1", len(rows))
			}
			r := rows[0]
			if r.Topic != events.TopicOrders || r.Key != id || r.Envelope.Source != "order" ||
				r.Envelope.CausationID != cause.ID || r.Envelope.CorrelationID != id {
				t.Errorf("outbox row = %+v", r)
			}
			c := e.cancellations(id)
			if c[0] != (events.OrderCancelled{OrderID: id, CustomerID: "c-1", Reason: tt.reason}) {
				t.Errorf("OrderCancelled = %+v", c[0])
			}

			// The same fact under another event id, and any later event,
			// change nothing: no second OrderCancelled, no second count.
			e.mustHandle(tt.cancel(e, id))
			e.mustHandle(e.paymentFailed(id))
			e.mustHandle(e.paid(id))
			e.mustHandle(e.reserved(id))
			e.mustHandle(e.shipped(id))
			e.assertStatus(id, StatusCancelled, tt.reason)
			if n := len(e.cancellations(id)); n != 1 {
				t.Errorf("%d OrderCancelled, want 1", n)
			}
			if got := servicetest.Metric(t, e.Registry, "saga_orders_total", "outcome", "cancelled", "reason", tt.reason); got != 1 {
				t.Errorf("saga_orders_total{cancelled,%s} = %v, want 1", tt.reason, got)
			}
			if got := servicetest.Metric(t, e.Registry, "saga_orders_total", "outcome", "shipped", "reason", ""); got != 0 {
				t.Errorf("saga_orders_total{shipped} = %v, want 0", got)
			}
			if got := e.histogramCount("saga_duration_seconds"); got != 1 {
				t.Errorf("saga_duration_seconds count = %d, want 1", got)
			}
		})
	}
}

func TestOutOfOrderEvents(t *testing.T) {
	type step struct {
		event func(e *env, id string) events.Envelope
		want  Status
	}
	paid, reserved, shipped := (*env).paid, (*env).reserved, (*env).shipped
	failed, refunded := (*env).paymentFailed, (*env).refunded
	tests := []struct {
		name  string
		steps []step
	}{
		{"shipped first", []step{{shipped, StatusShipped}, {paid, StatusShipped}, {reserved, StatusShipped}}},
		{"reserved before paid", []step{{reserved, StatusReserved}, {paid, StatusReserved}, {shipped, StatusShipped}}},
		{"shipped before reserved", []step{{paid, StatusPaid}, {shipped, StatusShipped}, {reserved, StatusShipped}}},
		{"paid twice", []step{{paid, StatusPaid}, {paid, StatusPaid}, {reserved, StatusReserved}}},
		{"reserved twice", []step{{reserved, StatusReserved}, {reserved, StatusReserved}}},
		{"shipped twice", []step{{shipped, StatusShipped}, {shipped, StatusShipped}}},
		{"a reserved order is not cancelled", []step{{paid, StatusPaid}, {reserved, StatusReserved}, {refunded, StatusReserved}, {failed, StatusReserved}, {shipped, StatusShipped}}},
		{"cancelled then paid", []step{{failed, StatusCancelled}, {paid, StatusCancelled}}},
		{"shipped then refunded", []step{{shipped, StatusShipped}, {refunded, StatusShipped}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.product("mug", 1250)
			id := e.placed()
			terminal := 0
			for i, s := range tt.steps {
				e.mustHandle(s.event(e, id))
				if got, _ := e.status(id); got != s.want {
					t.Fatalf("after step %d: %s, want %s", i, got, s.want)
				}
				if s.want.Terminal() {
					terminal = 1
				}
			}
			if got := e.histogramCount("saga_duration_seconds"); got != uint64(terminal) {
				t.Errorf("saga_duration_seconds count = %d, want %d", got, terminal)
			}
			if got, _ := e.status(id); got != StatusCancelled && len(e.cancellations(id)) != 0 {
				t.Errorf("OrderCancelled for an order that is %s", got)
			}
		})
	}
}

func TestHandlerPermanentFailures(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	id := e.placed()
	withData := func(ev events.Envelope, data string) events.Envelope {
		ev.Data = json.RawMessage(data)
		return ev
	}
	unknown := uuid.NewString()
	tests := []struct {
		name string
		ev   events.Envelope
	}{
		{"payment for an unknown order", e.paid(unknown)},
		{"reservation for an unknown order", e.reserved(unknown)},
		{"shipment for an unknown order", e.shipped(unknown)},
		{"failure for an unknown order", e.paymentFailed(unknown)},
		{"refund for an unknown order", e.refunded(unknown)},
		{"order id not a uuid", e.paid("order-1")},
		{"order id is sql", e.shipped("1'; DROP TABLE orders;--")},
		{"data not json", withData(e.paid(id), `{"order_id": `)},
		{"data an array", withData(e.shipped(id), `[1,2]`)},
		{"no order id", withData(e.paymentFailed(id), `{"customer_id": "c-1"}`)},
		{"wrong field type", withData(e.reserved(id), `{"order_id": 7}`)},
		{"unknown schema version", func() events.Envelope { ev := e.paid(id); ev.SchemaVersion = 99; return ev }()},
		{"schema version below any", func() events.Envelope { ev := e.paid(id); ev.SchemaVersion = -1; return ev }()},
		{"product not json", withData(e.event("inventory", events.ProductUpdated{SKU: "mug", Name: "Mug", PriceCents: 1}), `nope`)},
		{"product without sku", withData(e.event("inventory", events.ProductUpdated{SKU: "mug", Name: "Mug", PriceCents: 1}), `{"name":"Mug","price_cents":1}`)},
		{"product with bad sku", e.event("inventory", events.ProductUpdated{SKU: "mu g'--", Name: "Mug", PriceCents: 1})},
		{"product with negative price", e.event("inventory", events.ProductUpdated{SKU: "mug", Name: "Mug", PriceCents: -1})},
		{"product with absurd price", e.event("inventory", events.ProductUpdated{SKU: "mug", Name: "Mug", PriceCents: MaxMoneyCents + 1})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.handle(tt.ev)
			if !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("handle = %v, want a permanent error", err)
			}
			e.assertStatus(id, StatusPending, "")
			if n := len(e.outbox(events.TypeOrderCancelled)); n != 0 {
				t.Errorf("%d OrderCancelled written", n)
			}
			var price int64
			if err := e.Pool.QueryRow(e.ctx, `SELECT price_cents FROM products WHERE sku = 'mug'`).Scan(&price); err != nil || price != 1250 {
				t.Errorf("mug price = %d (%v), want 1250", price, err)
			}
		})
	}
}

func TestProductUpdated(t *testing.T) {
	e := newEnv(t)
	type row struct {
		Name  string
		Price int64
	}
	read := func(sku string) (row, bool) {
		t.Helper()
		var r row
		err := e.Pool.QueryRow(e.ctx, `SELECT name, price_cents FROM products WHERE sku = $1`, sku).Scan(&r.Name, &r.Price)
		if errors.Is(err, pgx.ErrNoRows) {
			return r, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return r, true
	}
	update := func(name string, price int64, at time.Time) events.Envelope {
		ev := e.event("inventory", events.ProductUpdated{SKU: "mug", Name: name, PriceCents: price})
		ev.Time = at
		return ev
	}
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)

	e.mustHandle(update("Mug", 1250, t0))
	if r, ok := read("mug"); !ok || r != (row{"Mug", 1250}) {
		t.Fatalf("after insert: %+v %v", r, ok)
	}
	e.mustHandle(update("Big mug", 1500, t0.Add(time.Second)))
	if r, _ := read("mug"); r != (row{"Big mug", 1500}) {
		t.Errorf("after update: %+v", r)
	}
	// An older event arriving late (redelivered under a new id) does not
	// roll the price back.
	e.mustHandle(update("Mug", 1250, t0))
	if r, _ := read("mug"); r != (row{"Big mug", 1500}) {
		t.Errorf("after a stale update: %+v", r)
	}
	// The same update again is harmless.
	e.mustHandle(update("Big mug", 1500, t0.Add(time.Second)))
	if r, _ := read("mug"); r != (row{"Big mug", 1500}) {
		t.Errorf("after a repeated update: %+v", r)
	}
	// An event without a time still applies.
	e.mustHandle(update("Mug 3", 1700, time.Time{}))
	if r, _ := read("mug"); r != (row{"Mug 3", 1700}) {
		t.Errorf("after an update without time: %+v", r)
	}

	// New orders are priced from the copy.
	rec := e.do("POST", "/orders", mugBody)
	got, _ := decodeBody(t, rec)
	if rec.Code != 201 || got.TotalCents != 2*1700 {
		t.Errorf("POST = %d %s", rec.Code, rec.Body)
	}
	if n := e.count("outbox"); n != 1 {
		t.Errorf("catalog updates wrote %d outbox rows, want only the order's", n-1)
	}
}

// The saga metrics count a terminal transition once, and only from the
// transaction that commits it. Through the real consumer: a PaymentFailed
// whose first attempt cancels the order and then rolls back (a transient
// failure) is retried in place and committed; a repeat of the same fact under
// another event id follows. One cancellation is observed.
func TestSagaMetricsOnlyAfterCommit(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	id := e.placed()
	failed, again := e.paymentFailed(id), e.paymentFailed(id)

	handlers := e.svc.handlers()
	cancelOrder := handlers[events.TypePaymentFailed]
	var attempts atomic.Int32
	var rolledBack, cancelledInTx atomic.Bool
	handlers[events.TypePaymentFailed] = func(ctx context.Context, tx pgx.Tx, ev events.Envelope) error {
		attempts.Add(1)
		if err := cancelOrder(ctx, tx, ev); err != nil {
			return err
		}
		if ev.ID != failed.ID || !rolledBack.CompareAndSwap(false, true) {
			return nil
		}
		// The handler did cancel the order in tx, so it arranged the
		// observation; the failure rolls both back.
		var status Status
		if err := tx.QueryRow(ctx, `SELECT status FROM orders WHERE id = $1`, id).Scan(&status); err != nil {
			return err
		}
		cancelledInTx.Store(status == StatusCancelled)
		return consumer.Transient(errors.New("injected failure after the handler"))
	}

	brokers := testenv.Kafka(t)
	topic := testenv.Topics(t, brokers, 1, "payments")[0]
	group := testenv.Name("order")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := broker.DeleteTopics(ctx, brokers, events.DeadLetterTopic(group)); err != nil {
			t.Logf("delete dead-letter topic: %v", err)
		}
	})
	c, err := consumer.New(consumer.Config{
		Brokers: brokers, Group: group, Handlers: handlers, Pool: e.Pool,
		Routes:     testRoutes(handlers, topic),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("consumer Run = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("consumer still running 20s after cancellation")
		}
	})

	w := broker.NewWriter(brokers)
	tr := &kafka.Transport{}
	w.Transport = tr
	t.Cleanup(func() { _ = w.Close(); tr.CloseIdleConnections() })
	wctx, cancel := context.WithTimeout(e.ctx, 15*time.Second)
	defer cancel()
	if err := w.WriteMessages(wctx, events.ToMessage(topic, failed), events.ToMessage(topic, again)); err != nil {
		t.Fatalf("produce: %v", err)
	}
	// One partition: once the repeat is in the inbox, the first event's
	// attempts and their after-commit effects are all done.
	testenv.WaitFor(t, 15*time.Second, "both events processed", func() bool {
		var n int
		if err := e.Pool.QueryRow(e.ctx, `SELECT count(*) FROM processed_events WHERE event_id = $1`, again.ID).Scan(&n); err != nil {
			t.Fatalf("read inbox: %v", err)
		}
		return n == 1
	})

	if !cancelledInTx.Load() || attempts.Load() != 3 {
		t.Fatalf("cancelled in the rolled-back attempt: %v; %d handler attempts, want 3 (rolled back, retried, repeat)",
			cancelledInTx.Load(), attempts.Load())
	}
	e.assertStatus(id, StatusCancelled, events.ReasonPaymentFailed)
	if n := len(e.cancellations(id)); n != 1 {
		t.Errorf("%d OrderCancelled, want 1", n)
	}
	if got := e.histogramCount("saga_duration_seconds"); got != 1 {
		t.Errorf("saga_duration_seconds count = %d, want 1", got)
	}
	if !strings.Contains(e.metricsText(), `saga_orders_total{outcome="cancelled",reason="payment_failed"} 1`) {
		t.Errorf("/metrics lacks exactly one payment_failed cancellation:\n%s", e.metricsText())
	}
}

// testRoutes routes the types of handlers as the saga does, but all
// through topic.
func testRoutes(handlers map[string]consumer.Handler, topic string) events.Routes {
	routes := events.Saga()
	for typ := range handlers {
		r := routes[typ]
		r.Topic = topic
		routes[typ] = r
	}
	return routes
}

func (e *env) metricsText() string {
	e.t.Helper()
	return e.do("GET", "/metrics", "").Body.String()
}
