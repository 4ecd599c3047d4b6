package main

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

func newOrderID() string { return uuid.Must(uuid.NewV7()).String() }

func orderCreated(t *testing.T, orderID, customerID string, total int64) events.Envelope {
	t.Helper()
	return servicetest.Event(t, "order", events.OrderCreated{
		OrderID: orderID, CustomerID: customerID, Email: customerID + "@example.com", Currency: "USD",
		Items:      []events.Item{{SKU: "MUG", Quantity: 1, UnitPriceCents: total}},
		TotalCents: total,
	})
}

func inventoryUnavailable(t *testing.T, orderID string) events.Envelope {
	t.Helper()
	return servicetest.Event(t, "inventory", events.InventoryUnavailable{OrderID: orderID, MissingSKUs: []string{"MUG"}})
}

// wantOne asserts that the outbox holds exactly one event for key, of type
// typ on payments.events, caused by cause, and returns it.
func (ts *testService) wantOne(t *testing.T, key, typ string, cause events.Envelope) events.Envelope {
	t.Helper()
	return servicetest.RequireOneEvent(t, ts.Pool, key, events.TopicPayments, typ, serviceName, cause)
}

func (ts *testService) wantPayment(t *testing.T, orderID string, status Status) Payment {
	t.Helper()
	p, err := ts.payment(context.Background(), orderID)
	if err != nil {
		t.Fatalf("payment %s: %v", orderID, err)
	}
	if p.Status != status {
		t.Fatalf("payment %s is %s, want %s", orderID, p.Status, status)
	}
	return p
}

func TestChargeCovered(t *testing.T) {
	ts := newTestService(t)
	ts.fund(t, "alice", 10_000)
	orderID := newOrderID()
	e := servicetest.Event(t, "order", events.OrderCreated{
		OrderID: orderID, CustomerID: "alice", Email: "a@example.com", Currency: "USD",
		Items:      []events.Item{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1299}, {SKU: "TEA", Quantity: 1, UnitPriceCents: 402}},
		TotalCents: 3000,
	})
	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}
	p := ts.wantPayment(t, orderID, StatusCharged)
	if p.AmountCents != 3000 || p.CustomerID != "alice" {
		t.Fatalf("payment %+v", p)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT jsonb_array_length(items) FROM payments WHERE order_id = $1`, orderID); n != 2 {
		t.Fatalf("payment stored with %d items, want the order's 2", n)
	}
	if b := ts.balance(t, "alice"); b != 7000 {
		t.Fatalf("balance %d, want 7000", b)
	}
	out := ts.wantOne(t, orderID, events.TypePaymentProcessed, e)
	got, err := events.Decode[events.PaymentProcessed](out)
	if err != nil {
		t.Fatal(err)
	}
	if got.OrderID != orderID || got.CustomerID != "alice" || got.AmountCents != 3000 {
		t.Fatalf("PaymentProcessed %+v", got)
	}
	if len(got.Items) != 2 || got.Items[0] != (events.Item{SKU: "MUG", Quantity: 2, UnitPriceCents: 1299}) || got.Items[1].SKU != "TEA" {
		t.Fatalf("PaymentProcessed items %+v, want the order's", got.Items)
	}
}

func TestChargeFails(t *testing.T) {
	tests := []struct {
		name     string
		deposit  int64 // 0 = no account
		total    int64
		customer string
	}{
		{"balance too low", 999, 1000, "bob"},
		{"unknown customer", 0, 1, "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestService(t)
			if tt.deposit > 0 {
				ts.fund(t, tt.customer, tt.deposit)
			}
			orderID := newOrderID()
			e := orderCreated(t, orderID, tt.customer, tt.total)
			if err := ts.Apply(t, e); err != nil {
				t.Fatal(err)
			}
			ts.wantPayment(t, orderID, StatusFailed)
			out := ts.wantOne(t, orderID, events.TypePaymentFailed, e)
			got, err := events.Decode[events.PaymentFailed](out)
			if err != nil {
				t.Fatal(err)
			}
			want := events.PaymentFailed{OrderID: orderID, CustomerID: tt.customer, AmountCents: tt.total, Reason: ReasonInsufficientFunds}
			if got != want {
				t.Fatalf("PaymentFailed %+v, want %+v", got, want)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT coalesce(sum(balance_cents), 0) FROM accounts`); int64(n) != tt.deposit {
				t.Fatalf("balances sum to %d, want %d untouched", n, tt.deposit)
			}
		})
	}
}

func TestChargeZeroTotalUnknownCustomer(t *testing.T) {
	ts := newTestService(t)
	orderID := newOrderID()
	e := orderCreated(t, orderID, "newcomer", 0)
	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}
	ts.wantPayment(t, orderID, StatusCharged)
	ts.wantOne(t, orderID, events.TypePaymentProcessed, e)
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM accounts`); n != 0 {
		t.Fatalf("a zero charge opened %d accounts", n)
	}
}

func TestChargeUpcastsV1(t *testing.T) {
	ts := newTestService(t)
	ts.fund(t, "olga", 500)
	orderID := newOrderID()
	data, _ := json.Marshal(map[string]any{
		"order_id": orderID, "customer_id": "olga", "customer_email": "o@example.com",
		"items": []events.Item{{SKU: "MUG", Quantity: 1, UnitPriceCents: 500}}, "total_cents": 500,
	})
	e := orderCreated(t, orderID, "olga", 500)
	e.SchemaVersion, e.Data = 1, data
	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}
	ts.wantPayment(t, orderID, StatusCharged)
	if b := ts.balance(t, "olga"); b != 0 {
		t.Fatalf("balance %d, want 0", b)
	}
}

func TestChargeIdempotentByState(t *testing.T) {
	ts := newTestService(t)
	ts.fund(t, "erin", 1000)
	orderID := newOrderID()
	first := orderCreated(t, orderID, "erin", 400)
	// The same business fact under a second event id.
	second := orderCreated(t, orderID, "erin", 400)
	for _, e := range []events.Envelope{first, second, first} {
		if err := ts.Apply(t, e); err != nil {
			t.Fatal(err)
		}
	}
	ts.wantPayment(t, orderID, StatusCharged)
	if b := ts.balance(t, "erin"); b != 600 {
		t.Fatalf("balance %d, want 600 (charged once)", b)
	}
	ts.wantOne(t, orderID, events.TypePaymentProcessed, first)
}

func TestChargeRejectsPoisonEvents(t *testing.T) {
	orderID := newOrderID()
	good := func(t *testing.T) events.Envelope { return orderCreated(t, orderID, "frank", 100) }
	tests := []struct {
		name   string
		mangle func(e *events.Envelope)
	}{
		{"data not JSON", func(e *events.Envelope) { e.Data = json.RawMessage(`{"order_id":`) }},
		{"wrong data shape", func(e *events.Envelope) { e.Data = json.RawMessage(`{"order_id": 42}`) }},
		{"no order id", func(e *events.Envelope) { e.Data = json.RawMessage(`{"customer_id": "frank", "total_cents": 100}`) }},
		{"order id not a UUID", func(e *events.Envelope) {
			e.Data = json.RawMessage(`{"order_id": "'; DROP TABLE payments; --", "customer_id": "frank", "total_cents": 100}`)
		}},
		{"negative total", func(e *events.Envelope) {
			e.Data = json.RawMessage(`{"order_id": "` + orderID + `", "customer_id": "frank", "total_cents": -100}`)
		}},
		{"no customer", func(e *events.Envelope) {
			e.Data = json.RawMessage(`{"order_id": "` + orderID + `", "total_cents": 100}`)
		}},
		{"unknown schema version", func(e *events.Envelope) { e.SchemaVersion = 99 }},
	}
	ts := newTestService(t)
	ts.fund(t, "frank", 1000)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := good(t)
			tt.mangle(&e)
			err := ts.Apply(t, e)
			if !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("error %v, want a permanent one", err)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM payments`); n != 0 {
				t.Fatalf("%d payments stored", n)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM outbox`); n != 0 {
				t.Fatalf("%d events written", n)
			}
			if b := ts.balance(t, "frank"); b != 1000 {
				t.Fatalf("balance %d, want 1000", b)
			}
		})
	}
}

func TestRefundPayment(t *testing.T) {
	ts := newTestService(t)
	ts.fund(t, "gina", 1000)
	orderID := newOrderID()
	charge := orderCreated(t, orderID, "gina", 700)
	if err := ts.Apply(t, charge); err != nil {
		t.Fatal(err)
	}
	first := inventoryUnavailable(t, orderID)
	second := inventoryUnavailable(t, orderID) // same fact, another event id
	for _, e := range []events.Envelope{first, second} {
		if err := ts.Apply(t, e); err != nil {
			t.Fatal(err)
		}
	}
	ts.wantPayment(t, orderID, StatusRefunded)
	if b := ts.balance(t, "gina"); b != 1000 {
		t.Fatalf("balance %d, want 1000 (refunded once)", b)
	}
	out := servicetest.OutboxEvents(t, ts.Pool, orderID)
	if len(out) != 2 || out[0].Envelope.Type != events.TypePaymentProcessed || out[1].Envelope.Type != events.TypePaymentRefunded {
		t.Fatalf("outbox %+v, want PaymentProcessed then one PaymentRefunded", out)
	}
	if out[1].Topic != events.TopicPayments || out[1].Envelope.CausationID != first.ID {
		t.Fatalf("PaymentRefunded on %s caused by %s, want %s caused by %s", out[1].Topic, out[1].Envelope.CausationID, events.TopicPayments, first.ID)
	}
	got, err := events.Decode[events.PaymentRefunded](out[1].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	want := events.PaymentRefunded{OrderID: orderID, CustomerID: "gina", AmountCents: 700, Reason: events.ReasonOutOfStock}
	if got != want {
		t.Fatalf("PaymentRefunded %+v, want %+v", got, want)
	}
	// The ledger adds up: balance = deposits - charges still standing.
	if n := servicetest.Count(t, ts.Pool, `SELECT (SELECT sum(amount_cents) FROM deposits)
		- coalesce((SELECT sum(amount_cents) FROM payments WHERE status = 'CHARGED'), 0)
		- (SELECT sum(balance_cents) FROM accounts)`); n != 0 {
		t.Fatalf("ledger off by %d", n)
	}
	if v := servicetest.Metric(t, ts.Registry, "refunds_total"); v != 1 {
		t.Fatalf("refunds_total %v, want 1", v)
	}
}

func TestRefundNothingToUndo(t *testing.T) {
	ts := newTestService(t)
	// A failed payment.
	failedOrder := newOrderID()
	if err := ts.Apply(t, orderCreated(t, failedOrder, "hank", 100)); err != nil {
		t.Fatal(err)
	}
	// And no payment at all.
	unknownOrder := newOrderID()
	for _, orderID := range []string{failedOrder, unknownOrder} {
		if err := ts.Apply(t, inventoryUnavailable(t, orderID)); err != nil {
			t.Fatalf("order %s: %v", orderID, err)
		}
	}
	ts.wantPayment(t, failedOrder, StatusFailed)
	if _, err := ts.payment(context.Background(), unknownOrder); !errors.Is(err, ErrNotFound) {
		t.Fatalf("payment of unknown order: %v, want ErrNotFound", err)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM outbox WHERE envelope->>'type' = $1`, events.TypePaymentRefunded); n != 0 {
		t.Fatalf("%d PaymentRefunded written", n)
	}
}

func TestRefundRejectsPoisonEvents(t *testing.T) {
	ts := newTestService(t)
	for name, data := range map[string]string{
		"not JSON":           `nope`,
		"no order id":        `{"missing_skus": ["MUG"]}`,
		"order id not UUID":  `{"order_id": "abc", "missing_skus": ["MUG"]}`,
		"missing_skus wrong": `{"order_id": "` + newOrderID() + `", "missing_skus": "MUG"}`,
	} {
		t.Run(name, func(t *testing.T) {
			e := inventoryUnavailable(t, newOrderID())
			e.Data = json.RawMessage(data)
			if err := ts.Apply(t, e); !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("error %v, want a permanent one", err)
			}
		})
	}
}

// TestConcurrentChargesNeverOverdraw charges one account from 20
// transactions at once: exactly as many succeed as the balance covers.
func TestConcurrentChargesNeverOverdraw(t *testing.T) {
	ts := newTestService(t)
	ts.fund(t, "ivan", 1000)
	const n, price = 20, 100
	h := servicetest.Handler(t, ts.handlers(), events.TypeOrderCreated)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		e := orderCreated(t, newOrderID(), "ivan", price)
		wg.Go(func() { errs <- servicetest.Deliver(t, ts.Pool, h, e) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM payments WHERE status = 'CHARGED'`); c != 10 {
		t.Fatalf("%d charged, want 10", c)
	}
	if c := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM payments WHERE status = 'FAILED'`); c != 10 {
		t.Fatalf("%d failed, want 10", c)
	}
	if b := ts.balance(t, "ivan"); b != 0 {
		t.Fatalf("balance %d, want 0", b)
	}
	if c := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM outbox WHERE envelope->>'type' = $1`, events.TypePaymentProcessed); c != 10 {
		t.Fatalf("%d PaymentProcessed, want 10", c)
	}
}
