package main

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

func orderCancelled(t *testing.T, orderID, reason string) events.Envelope {
	t.Helper()
	return servicetest.Event(t, "order", events.OrderCancelled{OrderID: orderID, CustomerID: "alice", Reason: reason})
}

func (ts *testService) mustApply(t *testing.T, e events.Envelope) {
	t.Helper()
	if err := ts.Apply(t, e); err != nil {
		t.Fatalf("%s: %v", e.Type, err)
	}
}

// TestOrderCancelledReleasesTheReservation: whatever inventory holds for
// the order when OrderCancelled arrives (any reason), it gives back once,
// however many times and under however many ids the cancellation arrives.
func TestOrderCancelledReleasesTheReservation(t *testing.T) {
	mugs := func(n int) events.Item { return events.Item{SKU: "MUG", Quantity: n, UnitPriceCents: 100} }
	tests := []struct {
		name               string
		before             func(t *testing.T, ts *testService, orderID string)
		reason             string
		status             ReservationStatus
		available, reserve int // MUG afterwards (5 in stock before)
		events             []string
		released           float64
	}{
		{
			name: "reserved, timed out: released", reason: events.ReasonTimedOut,
			before: func(t *testing.T, ts *testService, orderID string) {
				ts.mustApply(t, paymentProcessed(t, orderID, mugs(2), mugs(1)))
			},
			status: StatusReleased, available: 5, reserve: 0, released: 1,
			events: []string{events.TypeInventoryReserved},
		},
		{
			name: "rejected, cancelled for it: nothing held", reason: events.ReasonOutOfStock,
			before: func(t *testing.T, ts *testService, orderID string) {
				ts.mustApply(t, paymentProcessed(t, orderID, mugs(6)))
			},
			status: StatusRejected, available: 5, reserve: 0,
			events: []string{events.TypeInventoryUnavailable},
		},
		{
			name: "shipped (the protocol forbids it): the units left, nothing comes back", reason: events.ReasonTimedOut,
			before: func(t *testing.T, ts *testService, orderID string) {
				ts.mustApply(t, paymentProcessed(t, orderID, mugs(2)))
				ts.mustApply(t, orderShipped(t, orderID))
			},
			status: StatusShipped, available: 3, reserve: 0,
			events: []string{events.TypeInventoryReserved},
		},
		{
			name: "nothing yet: a tombstone", reason: events.ReasonPaymentFailed,
			before: func(t *testing.T, ts *testService, orderID string) {},
			status: StatusCancelled, available: 5, reserve: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestService(t)
			ts.stock(t, "MUG", 5)
			orderID := newOrderID()
			tt.before(t, ts, orderID)
			first := orderCancelled(t, orderID, tt.reason)
			for _, e := range []events.Envelope{first, first, orderCancelled(t, orderID, tt.reason)} {
				ts.mustApply(t, e)
			}
			ts.wantReservation(t, orderID, tt.status)
			ts.wantStock(t, "MUG", tt.available, tt.reserve)
			if got := servicetest.Types(servicetest.OutboxEvents(t, ts.Pool, orderID)); !slices.Equal(got, tt.events) {
				t.Fatalf("outbox %v, want %v", got, tt.events)
			}
			if v := servicetest.Metric(t, ts.Registry, "reservations_released_total"); v != tt.released {
				t.Fatalf("reservations_released_total %v, want %v", v, tt.released)
			}
		})
	}
}

// TestCancellationInEitherOrder: PaymentProcessed and OrderCancelled travel
// on different topics, so either can come first; stock ends as it began,
// and a PaymentProcessed that comes second reserves nothing and says
// nothing.
func TestCancellationInEitherOrder(t *testing.T) {
	tests := []struct {
		name    string
		first   string // event type delivered first
		status  ReservationStatus
		events  []string
		refused float64
	}{
		{"cancelled after it was paid", events.TypePaymentProcessed, StatusReleased, []string{events.TypeInventoryReserved}, 0},
		{"cancelled before it was paid", events.TypeOrderCancelled, StatusCancelled, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestService(t)
			ts.stock(t, "MUG", 5)
			ts.stock(t, "TEA", 2)
			orderID := newOrderID()
			paid := paymentProcessed(t, orderID, events.Item{SKU: "MUG", Quantity: 3}, events.Item{SKU: "TEA", Quantity: 2})
			cancelled := orderCancelled(t, orderID, events.ReasonTimedOut)
			order := []events.Envelope{paid, cancelled}
			if tt.first == events.TypeOrderCancelled {
				order = []events.Envelope{cancelled, paid}
			}
			for _, e := range order {
				ts.mustApply(t, e)
			}
			// And the paid order once more, under another id: still nothing.
			ts.mustApply(t, paymentProcessed(t, orderID, events.Item{SKU: "MUG", Quantity: 3}, events.Item{SKU: "TEA", Quantity: 2}))
			ts.wantReservation(t, orderID, tt.status)
			ts.wantStock(t, "MUG", 5, 0)
			ts.wantStock(t, "TEA", 2, 0)
			if got := servicetest.Types(servicetest.OutboxEvents(t, ts.Pool, orderID)); !slices.Equal(got, tt.events) {
				t.Fatalf("outbox %v, want %v", got, tt.events)
			}
			if v := servicetest.Metric(t, ts.Registry, "reservations_total", "outcome", "refused"); v != tt.refused {
				t.Fatalf("reservations_total{refused} %v, want %v", v, tt.refused)
			}
		})
	}
}

// TestOrderShippedAfterRelease: shipping never ships a cancelled order;
// if an OrderShipped came anyway, the released stock is not released again.
func TestOrderShippedAfterRelease(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	released, tombstoned := newOrderID(), newOrderID()
	ts.mustApply(t, paymentProcessed(t, released, events.Item{SKU: "MUG", Quantity: 2}))
	ts.mustApply(t, orderCancelled(t, released, events.ReasonTimedOut))
	ts.mustApply(t, orderCancelled(t, tombstoned, events.ReasonTimedOut))
	for _, orderID := range []string{released, tombstoned} {
		ts.mustApply(t, orderShipped(t, orderID))
	}
	ts.wantReservation(t, released, StatusReleased)
	ts.wantReservation(t, tombstoned, StatusCancelled)
	ts.wantStock(t, "MUG", 5, 0)
}

// TestReservationRacesCancellation runs PaymentProcessed and OrderCancelled
// of one order in concurrent transactions, each retried as the consumer
// would until it commits: whichever wins, the stock ends as it began, and
// the order with a released reservation or a tombstone.
func TestReservationRacesCancellation(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 100)
	ts.stock(t, "TEA", 100)
	outcomes := map[ReservationStatus]int{}
	for range 20 {
		orderID := newOrderID()
		envs := []events.Envelope{
			paymentProcessed(t, orderID, events.Item{SKU: "TEA", Quantity: 2}, events.Item{SKU: "MUG", Quantity: 1}),
			orderCancelled(t, orderID, events.ReasonTimedOut),
		}
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
		r, err := getReservation(t.Context(), ts.Pool, orderID)
		if err != nil {
			t.Fatal(err)
		}
		outcomes[r.Status]++
		want := map[ReservationStatus][]string{StatusReleased: {events.TypeInventoryReserved}, StatusCancelled: nil}
		types, ok := want[r.Status]
		if !ok {
			t.Fatalf("reservation %s, want RELEASED or CANCELLED", r.Status)
		}
		if got := servicetest.Types(servicetest.OutboxEvents(t, ts.Pool, orderID)); !slices.Equal(got, types) {
			t.Fatalf("reservation %s with events %v, want %v", r.Status, got, types)
		}
	}
	ts.wantStock(t, "MUG", 100, 0)
	ts.wantStock(t, "TEA", 100, 0)
	t.Logf("outcomes: %v", outcomes)
}

func TestOrderCancelledRejectsPoisonEvents(t *testing.T) {
	ts := newTestService(t)
	for name, data := range map[string]string{
		"not JSON":          `{`,
		"no order id":       `{"reason": "timed_out"}`,
		"order id not UUID": `{"order_id": "x' OR 1=1", "reason": "timed_out"}`,
	} {
		t.Run(name, func(t *testing.T) {
			e := orderCancelled(t, newOrderID(), events.ReasonTimedOut)
			e.Data = json.RawMessage(data)
			if err := ts.Apply(t, e); !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("error %v, want a permanent one", err)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM reservations`); n != 0 {
				t.Fatalf("%d reservations stored", n)
			}
		})
	}
}
