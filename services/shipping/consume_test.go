package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

func reserved(orderID string) events.InventoryReserved {
	return events.InventoryReserved{OrderID: orderID, Items: []events.Item{
		{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 500},
		{SKU: "SKU-2", Quantity: 1, UnitPriceCents: 1200},
	}}
}

func TestInventoryReservedShipsTheOrder(t *testing.T) {
	ts := newTestService(t)
	orderID := uuid.Must(uuid.NewV7()).String()
	e := servicetest.Event(t, "test", reserved(orderID))

	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}

	sh, err := getShipment(context.Background(), ts.pool, uuid.MustParse(orderID))
	if err != nil {
		t.Fatal(err)
	}
	if sh.Status != StatusShipped || !ValidTrackingNumber(sh.TrackingNumber) {
		t.Errorf("shipment = %+v, want SHIPPED with a valid tracking number", sh)
	}
	var items []events.Item
	if err := ts.pool.QueryRow(t.Context(), `SELECT items FROM shipments WHERE order_id = $1`, orderID).Scan(&items); err != nil {
		t.Fatal(err)
	}
	if want := reserved(orderID).Items; len(items) != 2 || items[0] != want[0] || items[1] != want[1] {
		t.Errorf("stored items = %+v, want the reservation's %+v", items, want)
	}

	out := servicetest.Outbox(t, ts.pool)
	if len(out) != 1 {
		t.Fatalf("outbox has %d events, want 1: %+v", len(out), out)
	}
	if out[0].Topic != events.TopicShipping || out[0].Envelope.Type != events.TypeOrderShipped || out[0].Envelope.CausationID != e.ID {
		t.Errorf("outbox event = %+v, want OrderShipped on %s caused by %s", out[0], events.TopicShipping, e.ID)
	}
	var shipped events.OrderShipped
	if err := json.Unmarshal(out[0].Envelope.Data, &shipped); err != nil {
		t.Fatal(err)
	}
	if shipped.OrderID != orderID || shipped.TrackingNumber != sh.TrackingNumber {
		t.Errorf("OrderShipped = %+v, want order %s with tracking number %s", shipped, orderID, sh.TrackingNumber)
	}
	if got := servicetest.Metric(t, ts.Registry, "shipments_total"); got != 1 {
		t.Errorf("shipments_total = %v, want 1", got)
	}
}

// A transaction that does not commit ships nothing and counts nothing: the
// metric follows committed shipments only.
func TestRolledBackShipmentIsNotCounted(t *testing.T) {
	ts := newTestService(t)
	e := servicetest.Event(t, "test", reserved(uuid.Must(uuid.NewV7()).String()))
	h := servicetest.Handler(t, ts.handlers(), e.Type)

	if err := servicetest.Deliver(t, ts.pool, servicetest.RollBack(h), e); !errors.Is(err, servicetest.ErrRolledBack) {
		t.Fatalf("err = %v, want the rollback", err)
	}
	if got := servicetest.Metric(t, ts.Registry, "shipments_total"); got != 0 {
		t.Errorf("shipments_total = %v after a rolled-back attempt, want 0", got)
	}
	if n := servicetest.Count(t, ts.pool, `SELECT count(*) FROM shipments`); n != 0 {
		t.Errorf("%d shipments after a rolled-back attempt, want none", n)
	}

	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}
	if got := servicetest.Metric(t, ts.Registry, "shipments_total"); got != 1 {
		t.Errorf("shipments_total = %v after the committed retry, want 1", got)
	}
}

func TestInventoryReservedTwiceShipsOnce(t *testing.T) {
	ts := newTestService(t)
	orderID := uuid.Must(uuid.NewV7()).String()

	// The same business fact under two event ids (e.g. a producer retry
	// before its outbox row was deleted): the inbox cannot tell, the state can.
	first, second := servicetest.Event(t, "test", reserved(orderID)), servicetest.Event(t, "test", reserved(orderID))
	if err := ts.Apply(t, first); err != nil {
		t.Fatal(err)
	}
	before, err := getShipment(context.Background(), ts.pool, uuid.MustParse(orderID))
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Apply(t, second); err != nil {
		t.Fatal(err)
	}
	after, err := getShipment(context.Background(), ts.pool, uuid.MustParse(orderID))
	if err != nil {
		t.Fatal(err)
	}
	if after.TrackingNumber != before.TrackingNumber {
		t.Errorf("tracking number changed from %s to %s", before.TrackingNumber, after.TrackingNumber)
	}
	if out := servicetest.Outbox(t, ts.pool); len(out) != 1 {
		t.Errorf("outbox has %d events, want 1", len(out))
	}
	if n := servicetest.Count(t, ts.pool, `SELECT count(*) FROM shipments`); n != 1 {
		t.Errorf("%d shipments, want 1", n)
	}
}

func TestInventoryReservedConcurrentlyShipsOnce(t *testing.T) {
	ts := newTestService(t)
	orderID := uuid.Must(uuid.NewV7()).String()
	errs := make(chan error, 4)
	for range cap(errs) {
		e := servicetest.Event(t, "test", reserved(orderID))
		go func() { errs <- ts.Apply(t, e) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if out := servicetest.Outbox(t, ts.pool); len(out) != 1 {
		t.Errorf("outbox has %d events, want 1", len(out))
	}
}

func TestInventoryReservedMalformedIsPermanent(t *testing.T) {
	valid := servicetest.Event(t, "test", reserved(uuid.Must(uuid.NewV7()).String()))
	tests := []struct {
		name   string
		mangle func(e *events.Envelope)
	}{
		{"data is not JSON", func(e *events.Envelope) { e.Data = json.RawMessage(`{not json`) }},
		{"data is not an object", func(e *events.Envelope) { e.Data = json.RawMessage(`[1,2]`) }},
		{"no order id", func(e *events.Envelope) { e.Data = json.RawMessage(`{"items":[]}`) }},
		{"order id is not a UUID", func(e *events.Envelope) { e.Data = json.RawMessage(`{"order_id":"'; DROP TABLE shipments; --"}`) }},
		{"order id is a very long string", func(e *events.Envelope) {
			e.Data = json.RawMessage(`{"order_id":"` + strings.Repeat("a", 10<<10) + `"}`)
		}},
		{"quantity has the wrong type", func(e *events.Envelope) {
			e.Data = json.RawMessage(`{"order_id":"` + uuid.NewString() + `","items":[{"sku":"A","quantity":"two"}]}`)
		}},
		{"unknown schema version", func(e *events.Envelope) { e.SchemaVersion = 99 }},
	}
	ts := newTestService(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := valid
			e.ID = uuid.NewString()
			tt.mangle(&e)
			err := ts.Apply(t, e)
			if !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("err = %v, want a permanent error", err)
			}
		})
	}
	if out := servicetest.Outbox(t, ts.pool); len(out) != 0 {
		t.Errorf("outbox has %d events, want none", len(out))
	}
}
