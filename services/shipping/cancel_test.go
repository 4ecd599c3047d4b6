package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

func expired(orderID string) events.OrderExpired {
	return events.OrderExpired{OrderID: orderID, CustomerID: "cust-1", Deadline: time.Now().Add(-time.Second).UTC()}
}

func cancelled(orderID, reason string) events.OrderCancelled {
	return events.OrderCancelled{OrderID: orderID, CustomerID: "cust-1", Reason: reason}
}

func mustApply(t *testing.T, ts testService, e events.Envelope) {
	t.Helper()
	if err := ts.Apply(t, e); err != nil {
		t.Fatalf("%s: %v", e.Type, err)
	}
}

// wantNotShown asserts that the shipping API has no shipment for the order.
func wantNotShown(t *testing.T, ts testService, orderID string) {
	t.Helper()
	if rec := get(t, ts, "/shipments/"+orderID); rec.Code != http.StatusNotFound {
		t.Fatalf("GET /shipments/%s: %d %s, want 404", orderID, rec.Code, rec.Body)
	}
}

// TestOrderExpiredBeforeShipping: an order that has not shipped when it
// expires never ships: ShipmentCancelled answers, once, and an
// InventoryReserved that comes later ships nothing.
func TestOrderExpiredBeforeShipping(t *testing.T) {
	ts := newTestService(t)
	orderID := uuid.Must(uuid.NewV7()).String()
	first := servicetest.Event(t, "order", expired(orderID))
	for _, e := range []events.Envelope{first, first, servicetest.Event(t, "order", expired(orderID))} {
		mustApply(t, ts, e)
	}
	got := servicetest.RequireOneEvent(t, ts.pool, orderID, events.TopicShipping, events.TypeShipmentCancelled, serviceName, first)
	sc, err := events.Decode[events.ShipmentCancelled](got)
	if err != nil {
		t.Fatal(err)
	}
	if want := (events.ShipmentCancelled{OrderID: orderID, Reason: events.ReasonTimedOut}); sc != want {
		t.Fatalf("ShipmentCancelled %+v, want %+v", sc, want)
	}

	for range 2 {
		mustApply(t, ts, servicetest.Event(t, "inventory", reserved(orderID)))
	}
	if types := servicetest.Types(servicetest.Outbox(t, ts.pool)); !slices.Equal(types, []string{events.TypeShipmentCancelled}) {
		t.Fatalf("outbox %v, want only the ShipmentCancelled", types)
	}
	wantNotShown(t, ts, orderID)
	if n := servicetest.Count(t, ts.pool, `SELECT count(*) FROM shipments WHERE order_id = $1 AND status = 'CANCELLED' AND tracking_number IS NULL AND reason = 'timed_out'`, orderID); n != 1 {
		t.Fatalf("%d tombstones of the order, want 1", n)
	}
	for name, want := range map[string]float64{"shipments_total": 0, "shipments_refused_total": 2, "shipments_cancelled_total": 1} {
		if v := servicetest.Metric(t, ts.Registry, name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	// The cancellation that follows changes nothing more.
	mustApply(t, ts, servicetest.Event(t, "order", cancelled(orderID, events.ReasonTimedOut)))
	if types := servicetest.Types(servicetest.Outbox(t, ts.pool)); len(types) != 1 {
		t.Fatalf("outbox %v after OrderCancelled, want only the ShipmentCancelled", types)
	}
}

// TestOrderExpiredAfterShipping: an order that shipped before it expired
// stays shipped, and shipping says nothing more.
func TestOrderExpiredAfterShipping(t *testing.T) {
	ts := newTestService(t)
	orderID := uuid.Must(uuid.NewV7()).String()
	mustApply(t, ts, servicetest.Event(t, "inventory", reserved(orderID)))
	before, err := getShipment(t.Context(), ts.pool, uuid.MustParse(orderID))
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, ts, servicetest.Event(t, "order", expired(orderID)))
	if types := servicetest.Types(servicetest.Outbox(t, ts.pool)); !slices.Equal(types, []string{events.TypeOrderShipped}) {
		t.Fatalf("outbox %v, want only the OrderShipped", types)
	}
	after, err := getShipment(t.Context(), ts.pool, uuid.MustParse(orderID))
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != StatusShipped || after.TrackingNumber != before.TrackingNumber {
		t.Fatalf("shipment %+v after expiry, want %+v", after, before)
	}
	if v := servicetest.Metric(t, ts.Registry, "shipments_cancelled_total"); v != 0 {
		t.Fatalf("shipments_cancelled_total = %v, want 0", v)
	}
}

// TestOrderCancelledLeavesATombstone: an OrderCancelled (any reason) that
// comes before the order ships keeps a late InventoryReserved from
// shipping it; one that comes after changes nothing.
func TestOrderCancelledLeavesATombstone(t *testing.T) {
	tests := []struct {
		name   string
		before []func(orderID string) events.Payload
		status string   // the order's row afterwards
		events []string // in the outbox afterwards
	}{
		{"nothing before", nil, StatusCancelled, nil},
		{"expired before", []func(string) events.Payload{func(id string) events.Payload { return expired(id) }},
			StatusCancelled, []string{events.TypeShipmentCancelled}},
		{"shipped before (the protocol forbids it)", []func(string) events.Payload{func(id string) events.Payload { return reserved(id) }},
			StatusShipped, []string{events.TypeOrderShipped}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestService(t)
			orderID := uuid.Must(uuid.NewV7()).String()
			for _, p := range tt.before {
				mustApply(t, ts, servicetest.Event(t, "test", p(orderID)))
			}
			for range 2 {
				mustApply(t, ts, servicetest.Event(t, "order", cancelled(orderID, events.ReasonPaymentFailed)))
			}
			mustApply(t, ts, servicetest.Event(t, "inventory", reserved(orderID)))
			var status string
			if err := ts.pool.QueryRow(t.Context(), `SELECT status FROM shipments WHERE order_id = $1`, orderID).Scan(&status); err != nil {
				t.Fatal(err)
			}
			if status != tt.status {
				t.Fatalf("status %s, want %s", status, tt.status)
			}
			if types := servicetest.Types(servicetest.Outbox(t, ts.pool)); !slices.Equal(types, tt.events) {
				t.Fatalf("outbox %v, want %v", types, tt.events)
			}
			if n := servicetest.Count(t, ts.pool, `SELECT count(*) FROM shipments`); n != 1 {
				t.Fatalf("%d rows in shipments, want 1", n)
			}
			if tt.status == StatusCancelled {
				wantNotShown(t, ts, orderID)
			}
		})
	}
}

// TestExpiryRacesShipping delivers InventoryReserved and OrderExpired of one
// order in concurrent transactions, each retried as the consumer would
// until it commits: exactly one of "shipped" and "ShipmentCancelled"
// happens, every round.
func TestExpiryRacesShipping(t *testing.T) {
	ts := newTestService(t)
	outcomes := map[string]int{}
	for range 20 {
		orderID := uuid.Must(uuid.NewV7()).String()
		envs := []events.Envelope{servicetest.Event(t, "inventory", reserved(orderID)), servicetest.Event(t, "order", expired(orderID))}
		var wg sync.WaitGroup
		errs := make([]error, len(envs))
		for i, e := range envs {
			h := servicetest.Handler(t, ts.handlers(), e.Type)
			wg.Go(func() {
				for range 5 {
					if errs[i] = servicetest.Deliver(t, ts.pool, h, e); errs[i] == nil {
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
		out := servicetest.OutboxEvents(t, ts.pool, orderID)
		if len(out) != 1 {
			t.Fatalf("%d events for the order, want exactly one of OrderShipped and ShipmentCancelled: %+v", len(out), out)
		}
		var status string
		if err := ts.pool.QueryRow(t.Context(), `SELECT status FROM shipments WHERE order_id = $1`, orderID).Scan(&status); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{events.TypeOrderShipped: StatusShipped, events.TypeShipmentCancelled: StatusCancelled}[out[0].Envelope.Type]
		if status != want {
			t.Fatalf("%s emitted, shipment %s, want %s", out[0].Envelope.Type, status, want)
		}
		outcomes[out[0].Envelope.Type]++
	}
	if shipped, cancelled := servicetest.Metric(t, ts.Registry, "shipments_total"), servicetest.Metric(t, ts.Registry, "shipments_cancelled_total"); shipped+cancelled != 20 {
		t.Fatalf("shipments_total %v + shipments_cancelled_total %v, want 20", shipped, cancelled)
	}
	t.Logf("outcomes: %v", outcomes)
}

func TestOrderExpiredMalformedIsPermanent(t *testing.T) {
	ts := newTestService(t)
	for name, data := range map[string]string{
		"not JSON":          `{"order_id"`,
		"no order id":       `{"deadline": "2026-12-02T03:00:00Z"}`,
		"order id not UUID": `{"order_id": "'; DROP TABLE shipments; --"}`,
		"deadline no time":  `{"order_id": "` + uuid.NewString() + `", "deadline": "soon"}`,
	} {
		t.Run(name, func(t *testing.T) {
			for _, e := range []events.Envelope{servicetest.Event(t, "order", expired(uuid.NewString())), servicetest.Event(t, "order", cancelled(uuid.NewString(), "timed_out"))} {
				e.Data = json.RawMessage(data)
				if name == "deadline no time" && e.Type == events.TypeOrderCancelled {
					continue
				}
				if err := ts.Apply(t, e); !errors.Is(err, consumer.ErrPermanent) {
					t.Fatalf("%s: err = %v, want a permanent error", e.Type, err)
				}
			}
		})
	}
	if n := servicetest.Count(t, ts.pool, `SELECT count(*) FROM shipments`); n != 0 {
		t.Fatalf("%d rows in shipments, want none", n)
	}
	if out := servicetest.Outbox(t, ts.pool); len(out) != 0 {
		t.Fatalf("outbox has %d events, want none", len(out))
	}
}

// An expiry whose transaction does not commit records nothing and counts
// nothing; its committed retry does both, once.
func TestRolledBackExpiryIsNotCounted(t *testing.T) {
	ts := newTestService(t)
	orderID := uuid.Must(uuid.NewV7()).String()
	e := servicetest.Event(t, "order", expired(orderID))
	h := servicetest.Handler(t, ts.handlers(), e.Type)
	if err := servicetest.Deliver(t, ts.pool, servicetest.RollBack(h), e); !errors.Is(err, servicetest.ErrRolledBack) {
		t.Fatalf("err = %v, want the rollback", err)
	}
	if n := servicetest.Count(t, ts.pool, `SELECT count(*) FROM shipments`); n != 0 {
		t.Fatalf("%d rows in shipments after a rolled-back attempt, want none", n)
	}
	if v := servicetest.Metric(t, ts.Registry, "shipments_cancelled_total"); v != 0 {
		t.Fatalf("shipments_cancelled_total = %v after a rolled-back attempt, want 0", v)
	}
	mustApply(t, ts, e)
	if v := servicetest.Metric(t, ts.Registry, "shipments_cancelled_total", "reason", events.ReasonTimedOut); v != 1 {
		t.Fatalf("shipments_cancelled_total{timed_out} = %v after the committed retry, want 1", v)
	}
	servicetest.RequireOneEvent(t, ts.pool, orderID, events.TopicShipping, events.TypeShipmentCancelled, serviceName, e)
}
