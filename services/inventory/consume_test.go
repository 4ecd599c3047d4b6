package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

func newOrderID() string { return uuid.Must(uuid.NewV7()).String() }

func paymentProcessed(t *testing.T, orderID string, items ...events.Item) events.Envelope {
	t.Helper()
	var total int64
	for _, it := range items {
		total += int64(it.Quantity) * it.UnitPriceCents
	}
	return servicetest.Event(t, "payment", events.PaymentProcessed{OrderID: orderID, CustomerID: "alice", AmountCents: total, Items: items})
}

func orderShipped(t *testing.T, orderID string) events.Envelope {
	t.Helper()
	return servicetest.Event(t, "shipping", events.OrderShipped{OrderID: orderID, TrackingNumber: "TRK-1"})
}

func (ts *testService) wantReservation(t *testing.T, orderID string, status ReservationStatus) Reservation {
	t.Helper()
	r, err := getReservation(context.Background(), ts.Pool, orderID)
	if err != nil {
		t.Fatalf("reservation %s: %v", orderID, err)
	}
	if r.Status != status {
		t.Fatalf("reservation %s is %s, want %s", orderID, r.Status, status)
	}
	return r
}

// wantOne asserts that the outbox holds exactly one event for key, of type
// typ on inventory.events, caused by cause, and returns it.
func (ts *testService) wantOne(t *testing.T, key, typ string, cause events.Envelope) events.Envelope {
	t.Helper()
	return servicetest.RequireOneEvent(t, ts.Pool, key, events.TopicInventory, typ, serviceName, cause)
}

func TestReserveAll(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	ts.stock(t, "TEA", 2)
	orderID := newOrderID()
	items := []events.Item{{SKU: "TEA", Quantity: 2, UnitPriceCents: 400}, {SKU: "MUG", Quantity: 1, UnitPriceCents: 1299}, {SKU: "MUG", Quantity: 2, UnitPriceCents: 1299}}
	e := paymentProcessed(t, orderID, items...)
	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}
	r := ts.wantReservation(t, orderID, StatusReserved)
	if r.Demand.Units("MUG") != 3 || r.Demand.Units("TEA") != 2 {
		t.Fatalf("reservation holds %+v, want 3 MUG and 2 TEA", r.Demand)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT jsonb_array_length(items) FROM reservations WHERE order_id = $1`, orderID); n != 3 {
		t.Fatalf("reservation stored with %d items, want the order's 3", n)
	}
	ts.wantStock(t, "MUG", 2, 3)
	ts.wantStock(t, "TEA", 0, 2)
	got, err := events.Decode[events.InventoryReserved](ts.wantOne(t, orderID, events.TypeInventoryReserved, e))
	if err != nil {
		t.Fatal(err)
	}
	if got.OrderID != orderID || !reflect.DeepEqual(got.Items, items) {
		t.Fatalf("InventoryReserved %+v, want the order's items %+v", got, items)
	}
}

func TestReserveNone(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	ts.stock(t, "TEA", 1)
	orderID := newOrderID()
	e := paymentProcessed(t, orderID,
		events.Item{SKU: "MUG", Quantity: 5}, events.Item{SKU: "TEA", Quantity: 2}, events.Item{SKU: "GHOST", Quantity: 1})
	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}
	ts.wantReservation(t, orderID, StatusRejected)
	ts.wantStock(t, "MUG", 5, 0) // available, but not reserved: all or nothing
	ts.wantStock(t, "TEA", 1, 0)
	got, err := events.Decode[events.InventoryUnavailable](ts.wantOne(t, orderID, events.TypeInventoryUnavailable, e))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"GHOST", "TEA"}; got.OrderID != orderID || !reflect.DeepEqual(got.MissingSKUs, want) {
		t.Fatalf("InventoryUnavailable %+v, want missing %v", got, want)
	}
}

func TestReserveRejectsNonsenseLines(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	for name, items := range map[string][]events.Item{
		"negative quantity": {{SKU: "MUG", Quantity: -5}},
		"zero quantity":     {{SKU: "MUG", Quantity: 0}},
		"no items":          nil,
	} {
		t.Run(name, func(t *testing.T) {
			orderID := newOrderID()
			e := paymentProcessed(t, orderID, items...)
			if err := ts.Apply(t, e); err != nil {
				t.Fatal(err)
			}
			ts.wantReservation(t, orderID, StatusRejected)
			ts.wantOne(t, orderID, events.TypeInventoryUnavailable, e)
			ts.wantStock(t, "MUG", 5, 0)
		})
	}
}

func TestReserveIdempotentByState(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	orderID := newOrderID()
	first := paymentProcessed(t, orderID, events.Item{SKU: "MUG", Quantity: 2})
	second := paymentProcessed(t, orderID, events.Item{SKU: "MUG", Quantity: 2}) // same fact, another id
	for _, e := range []events.Envelope{first, second, first} {
		if err := ts.Apply(t, e); err != nil {
			t.Fatal(err)
		}
	}
	ts.wantReservation(t, orderID, StatusReserved)
	ts.wantStock(t, "MUG", 3, 2)
	ts.wantOne(t, orderID, events.TypeInventoryReserved, first)
}

func TestReserveRejectsPoisonEvents(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	for name, data := range map[string]string{
		"not JSON":          `{"order_id"`,
		"no order id":       `{"items": [{"sku": "MUG", "quantity": 1}]}`,
		"order id not UUID": `{"order_id": "1 OR 1=1", "items": [{"sku": "MUG", "quantity": 1}]}`,
		"items not a list":  `{"order_id": "` + newOrderID() + `", "items": {"sku": "MUG"}}`,
		"quantity a string": `{"order_id": "` + newOrderID() + `", "items": [{"sku": "MUG", "quantity": "1"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			e := paymentProcessed(t, newOrderID(), events.Item{SKU: "MUG", Quantity: 1})
			e.Data = json.RawMessage(data)
			if err := ts.Apply(t, e); !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("error %v, want a permanent one", err)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM reservations`); n != 0 {
				t.Fatalf("%d reservations stored", n)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM outbox WHERE envelope->>'type' <> $1`, events.TypeProductUpdated); n != 0 {
				t.Fatalf("%d events written", n)
			}
			ts.wantStock(t, "MUG", 5, 0)
		})
	}
}

func TestReleaseReservation(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	ts.stock(t, "TEA", 3)
	orderID := newOrderID()
	if err := ts.Apply(t, paymentProcessed(t, orderID, events.Item{SKU: "MUG", Quantity: 2}, events.Item{SKU: "TEA", Quantity: 3})); err != nil {
		t.Fatal(err)
	}
	// Shipped twice, under two event ids: released once.
	for _, e := range []events.Envelope{orderShipped(t, orderID), orderShipped(t, orderID)} {
		if err := ts.Apply(t, e); err != nil {
			t.Fatal(err)
		}
	}
	ts.wantReservation(t, orderID, StatusShipped)
	ts.wantStock(t, "MUG", 3, 0) // the units left: available stays down
	ts.wantStock(t, "TEA", 0, 0)
	if n := len(servicetest.OutboxEvents(t, ts.Pool, orderID)); n != 1 {
		t.Fatalf("%d events for the order, want only InventoryReserved", n)
	}
}

func TestReleaseNothingHeld(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 1)
	rejected := newOrderID()
	if err := ts.Apply(t, paymentProcessed(t, rejected, events.Item{SKU: "MUG", Quantity: 2})); err != nil {
		t.Fatal(err)
	}
	unknown := newOrderID()
	for _, orderID := range []string{rejected, unknown} {
		if err := ts.Apply(t, orderShipped(t, orderID)); err != nil {
			t.Fatalf("order %s: %v", orderID, err)
		}
	}
	ts.wantReservation(t, rejected, StatusRejected)
	if _, err := getReservation(context.Background(), ts.Pool, unknown); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reservation of unknown order: %v, want ErrNotFound", err)
	}
	ts.wantStock(t, "MUG", 1, 0)
}

func TestReleaseRejectsPoisonEvents(t *testing.T) {
	ts := newTestService(t)
	for name, data := range map[string]string{
		"not JSON":          `[`,
		"no order id":       `{"tracking_number": "TRK"}`,
		"order id not UUID": `{"order_id": "abc", "tracking_number": "TRK"}`,
	} {
		t.Run(name, func(t *testing.T) {
			e := orderShipped(t, newOrderID())
			e.Data = json.RawMessage(data)
			if err := ts.Apply(t, e); !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("error %v, want a permanent one", err)
			}
		})
	}
}

// deliverAll runs the handler for each envelope at once, each in its own
// transaction, and returns their errors.
func (ts *testService) deliverAll(t *testing.T, envs []events.Envelope) []error {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(envs))
	for i, e := range envs {
		h := servicetest.Handler(t, ts.handlers(), e.Type)
		wg.Go(func() { errs[i] = servicetest.Deliver(t, ts.Pool, h, e) })
	}
	wg.Wait()
	return errs
}

// TestConcurrentReservationsNeverOversell reserves 1 unit of a SKU with 5
// in stock from 20 transactions at once.
func TestConcurrentReservationsNeverOversell(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	envs := make([]events.Envelope, 20)
	for i := range envs {
		envs[i] = paymentProcessed(t, newOrderID(), events.Item{SKU: "MUG", Quantity: 1, UnitPriceCents: 100})
	}
	for _, err := range ts.deliverAll(t, envs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM reservations WHERE status = 'RESERVED'`); n != 5 {
		t.Fatalf("%d reserved, want 5", n)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM reservations WHERE status = 'REJECTED'`); n != 15 {
		t.Fatalf("%d rejected, want 15", n)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM outbox WHERE envelope->>'type' = $1`, events.TypeInventoryUnavailable); n != 15 {
		t.Fatalf("%d InventoryUnavailable, want 15", n)
	}
	ts.wantStock(t, "MUG", 0, 5)
	if v := servicetest.Metric(t, ts.Registry, "reservations_total", "outcome", "reserved"); v != 5 {
		t.Fatalf("reservations_total{reserved} = %v, want 5", v)
	}
}

// TestReservationsCountedAfterCommit: an attempt that reserves and then
// rolls back (its commit failed; the consumer will retry) counts nothing,
// and the attempt that commits counts once.
func TestReservationsCountedAfterCommit(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 5)
	e := paymentProcessed(t, newOrderID(), events.Item{SKU: "MUG", Quantity: 1})
	reserve := servicetest.Handler(t, ts.handlers(), events.TypePaymentProcessed)
	if err := servicetest.Deliver(t, ts.Pool, servicetest.RollBack(reserve), e); !errors.Is(err, servicetest.ErrRolledBack) {
		t.Fatalf("rolled-back attempt: %v", err)
	}
	ts.wantStock(t, "MUG", 5, 0)
	if v := servicetest.Metric(t, ts.Registry, "reservations_total"); v != 0 {
		t.Fatalf("reservations_total = %v after a rolled-back attempt, want 0", v)
	}
	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}
	ts.wantStock(t, "MUG", 4, 1)
	if v := servicetest.Metric(t, ts.Registry, "reservations_total", "outcome", "reserved"); v != 1 {
		t.Fatalf("reservations_total{reserved} = %v, want 1", v)
	}
}

// TestConcurrentReservationsDoNotDeadlock reserves two SKUs listed in
// opposite orders from concurrent transactions: rows are locked in SKU
// order, so none of them deadlocks.
func TestConcurrentReservationsDoNotDeadlock(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "AAA", 100)
	ts.stock(t, "ZZZ", 100)
	envs := make([]events.Envelope, 16)
	for i := range envs {
		a, z := events.Item{SKU: "AAA", Quantity: 1}, events.Item{SKU: "ZZZ", Quantity: 1}
		if i%2 == 0 {
			envs[i] = paymentProcessed(t, newOrderID(), a, z)
		} else {
			envs[i] = paymentProcessed(t, newOrderID(), z, a)
		}
	}
	for _, err := range ts.deliverAll(t, envs) {
		if err != nil {
			t.Fatalf("reservation failed (deadlock?): %v", err)
		}
	}
	ts.wantStock(t, "AAA", 84, 16)
	ts.wantStock(t, "ZZZ", 84, 16)
}
