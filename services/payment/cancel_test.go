package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

func orderCancelled(t *testing.T, orderID, customerID, reason string) events.Envelope {
	t.Helper()
	return servicetest.Event(t, "order", events.OrderCancelled{OrderID: orderID, CustomerID: customerID, Reason: reason})
}

// wantLedger asserts that every balance adds up: the deposits less the
// charges still standing (tombstones hold nothing).
func (ts *testService) wantLedger(t *testing.T) {
	t.Helper()
	if n := servicetest.Count(t, ts.Pool, `SELECT coalesce((SELECT sum(amount_cents) FROM deposits), 0)
		- coalesce((SELECT sum(amount_cents) FROM payments WHERE status = 'CHARGED'), 0)
		- coalesce((SELECT sum(balance_cents) FROM accounts), 0)`); n != 0 {
		t.Fatalf("ledger off by %d", n)
	}
}

// TestOrderCancelledUndoesThePayment: whatever payment holds for the order
// when OrderCancelled arrives (any reason), it undoes it once, however many
// times and under however many event ids the cancellation arrives.
func TestOrderCancelledUndoesThePayment(t *testing.T) {
	tests := []struct {
		name    string
		deposit int64
		before  func(t *testing.T, ts *testService, orderID string) // what happened before the cancellation
		reason  string
		status  Status   // the payment afterwards
		balance int64    // the customer's afterwards
		events  []string // the order's events in the outbox afterwards
		refunds float64  // refunds_total, all of it {reason}
	}{
		{
			name: "charged, timed out: refunded", deposit: 1000, reason: events.ReasonTimedOut,
			before: func(t *testing.T, ts *testService, orderID string) {
				ts.mustApply(t, orderCreated(t, orderID, "cust", 700))
			},
			status: StatusRefunded, balance: 1000, refunds: 1,
			events: []string{events.TypePaymentProcessed, events.TypePaymentRefunded},
		},
		{
			name: "zero total charged, timed out: refunded without a debit", reason: events.ReasonTimedOut,
			before: func(t *testing.T, ts *testService, orderID string) {
				ts.mustApply(t, orderCreated(t, orderID, "cust", 0))
			},
			status: StatusRefunded, balance: -1, refunds: 1,
			events: []string{events.TypePaymentProcessed, events.TypePaymentRefunded},
		},
		{
			name: "failed, cancelled for it: nothing to undo", deposit: 100, reason: events.ReasonPaymentFailed,
			before: func(t *testing.T, ts *testService, orderID string) {
				ts.mustApply(t, orderCreated(t, orderID, "cust", 700))
			},
			status: StatusFailed, balance: 100,
			events: []string{events.TypePaymentFailed},
		},
		{
			name: "refunded for out of stock, then cancelled for it: refunded once", deposit: 1000, reason: events.ReasonOutOfStock,
			before: func(t *testing.T, ts *testService, orderID string) {
				ts.mustApply(t, orderCreated(t, orderID, "cust", 700))
				ts.mustApply(t, inventoryUnavailable(t, orderID))
			},
			status: StatusRefunded, balance: 1000, refunds: 1,
			events: []string{events.TypePaymentProcessed, events.TypePaymentRefunded},
		},
		{
			name: "no payment: a tombstone", deposit: 1000, reason: events.ReasonTimedOut,
			before: func(t *testing.T, ts *testService, orderID string) {},
			status: StatusCancelled, balance: 1000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestService(t)
			if tt.deposit > 0 {
				ts.fund(t, "cust", tt.deposit)
			}
			orderID := newOrderID()
			tt.before(t, ts, orderID)
			first := orderCancelled(t, orderID, "cust", tt.reason)
			// Redelivered under its own id (the inbox would stop that one, Apply
			// has none), and the same fact under another id.
			for _, e := range []events.Envelope{first, first, orderCancelled(t, orderID, "cust", tt.reason)} {
				ts.mustApply(t, e)
			}
			ts.wantPayment(t, orderID, tt.status)
			if tt.balance >= 0 {
				if b := ts.balance(t, "cust"); b != tt.balance {
					t.Fatalf("balance %d, want %d", b, tt.balance)
				}
			}
			ts.wantLedger(t)
			if got := servicetest.Types(servicetest.OutboxEvents(t, ts.Pool, orderID)); !slices.Equal(got, tt.events) {
				t.Fatalf("outbox %v, want %v", got, tt.events)
			}
			if v := servicetest.Metric(t, ts.Registry, "refunds_total"); v != tt.refunds {
				t.Fatalf("refunds_total %v, want %v", v, tt.refunds)
			}
			if tt.refunds > 0 {
				if v := servicetest.Metric(t, ts.Registry, "refunds_total", "reason", tt.reason); v != tt.refunds {
					t.Fatalf("refunds_total{reason=%s} %v, want %v", tt.reason, v, tt.refunds)
				}
			}
			if tt.status != StatusRefunded || tt.reason == events.ReasonOutOfStock {
				return
			}
			// The refund says why, and answers the first cancellation.
			out := servicetest.OutboxEvents(t, ts.Pool, orderID)[1]
			got, err := events.Decode[events.PaymentRefunded](out.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			p := ts.wantPayment(t, orderID, StatusRefunded)
			want := events.PaymentRefunded{OrderID: orderID, CustomerID: "cust", AmountCents: p.AmountCents, Reason: tt.reason}
			if got != want || out.Topic != events.TopicPayments || out.Envelope.CausationID != first.ID {
				t.Fatalf("PaymentRefunded %+v on %s caused by %s, want %+v on %s caused by %s",
					got, out.Topic, out.Envelope.CausationID, want, events.TopicPayments, first.ID)
			}
		})
	}
}

// TestLateOrderCreatedChargesNothing: an OrderCreated that arrives after
// its order's cancellation (a dead letter replayed) finds the tombstone.
func TestLateOrderCreatedChargesNothing(t *testing.T) {
	ts := newTestService(t)
	ts.fund(t, "late", 1000)
	orderID := newOrderID()
	ts.mustApply(t, orderCancelled(t, orderID, "late", events.ReasonTimedOut))
	for range 2 {
		ts.mustApply(t, orderCreated(t, orderID, "late", 600))
	}
	p := ts.wantPayment(t, orderID, StatusCancelled)
	if p.AmountCents != 0 || p.CustomerID != "late" {
		t.Fatalf("tombstone %+v, want a payment of nothing for late", p)
	}
	if b := ts.balance(t, "late"); b != 1000 {
		t.Fatalf("balance %d, want 1000 untouched", b)
	}
	ts.wantLedger(t)
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM outbox`); n != 0 {
		t.Fatalf("%d events written, want none", n)
	}
	if v := servicetest.Metric(t, ts.Registry, "charges_refused_total"); v != 2 {
		t.Fatalf("charges_refused_total %v, want 2", v)
	}
	// InventoryUnavailable for it (it cannot come, nothing was paid) finds
	// nothing to refund either.
	ts.mustApply(t, inventoryUnavailable(t, orderID))
	ts.wantPayment(t, orderID, StatusCancelled)
}

// TestChargeRacesCancellation runs OrderCreated and OrderCancelled of one
// order in concurrent transactions, each retried as the consumer would
// until it commits: whichever wins, the customer ends with the balance they
// started with, and the order with a refunded charge or a tombstone.
func TestChargeRacesCancellation(t *testing.T) {
	ts := newTestService(t)
	const rounds, price = 20, 100
	ts.fund(t, "racer", rounds*price)
	outcomes := map[Status]int{}
	for range rounds {
		orderID := newOrderID()
		envs := []events.Envelope{orderCreated(t, orderID, "racer", price), orderCancelled(t, orderID, "racer", events.ReasonTimedOut)}
		var wg sync.WaitGroup
		errs := make([]error, len(envs))
		for i, e := range envs {
			h := servicetest.Handler(t, ts.handlers(), e.Type)
			wg.Go(func() {
				for range 5 {
					if errs[i] = servicetest.Deliver(t, ts.Pool, h, e); errs[i] == nil {
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("not applied after 5 attempts: %v", err)
			}
		}
		p, err := ts.payment(t.Context(), orderID)
		if err != nil {
			t.Fatal(err)
		}
		outcomes[p.Status]++
		want := map[Status][]string{
			StatusRefunded:  {events.TypePaymentProcessed, events.TypePaymentRefunded},
			StatusCancelled: nil,
		}
		types, ok := want[p.Status]
		if !ok {
			t.Fatalf("payment %+v, want REFUNDED or CANCELLED", p)
		}
		if got := servicetest.Types(servicetest.OutboxEvents(t, ts.Pool, orderID)); !slices.Equal(got, types) {
			t.Fatalf("payment %s with events %v, want %v", p.Status, got, types)
		}
	}
	if b := ts.balance(t, "racer"); b != rounds*price {
		t.Fatalf("balance %d, want %d: every charge refunded or never made", b, rounds*price)
	}
	ts.wantLedger(t)
	t.Logf("outcomes: %v", outcomes)
}

func TestOrderCancelledRejectsPoisonEvents(t *testing.T) {
	ts := newTestService(t)
	for name, data := range map[string]string{
		"not JSON":          `{`,
		"no order id":       `{"customer_id": "x", "reason": "timed_out"}`,
		"order id not UUID": `{"order_id": "1; DELETE FROM payments", "reason": "timed_out"}`,
		"reason not text":   `{"order_id": "` + newOrderID() + `", "reason": 7}`,
	} {
		t.Run(name, func(t *testing.T) {
			e := orderCancelled(t, newOrderID(), "x", events.ReasonTimedOut)
			e.Data = json.RawMessage(data)
			if err := ts.Apply(t, e); !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("error %v, want a permanent one", err)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM payments`); n != 0 {
				t.Fatalf("%d payments stored", n)
			}
		})
	}
}

// TestGetPaymentOfATombstone: the payment API shows an order cancelled
// before it was charged as a CANCELLED payment of nothing.
func TestGetPaymentOfATombstone(t *testing.T) {
	ts := newTestService(t)
	orderID := newOrderID()
	ts.mustApply(t, orderCancelled(t, orderID, "cust", events.ReasonTimedOut))
	res := ts.Do(t, http.MethodGet, "/payments/"+orderID, "", "")
	if res.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", res.Code)
	}
	want := paymentResponse{OrderID: orderID, Status: StatusCancelled, AmountCents: 0}
	if got := servicetest.DecodeJSON[paymentResponse](t, res); got != want {
		t.Fatalf("payment %+v, want %+v", got, want)
	}
}
