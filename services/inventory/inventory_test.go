package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

func TestValidateProduct(t *testing.T) {
	tests := []struct {
		name       string
		pname      string
		price      int64
		available  int
		wantFields []string
	}{
		{"ok", "Mug", 1299, 50, nil},
		{"free and out of stock", "Sticker", 0, 0, nil},
		{"limits", strings.Repeat("é", MaxNameLength), MaxPriceCents, MaxAvailable, nil},
		{"empty name", "", 100, 1, []string{"name"}},
		{"blank name", "   ", 100, 1, []string{"name"}},
		{"name too long", strings.Repeat("a", MaxNameLength+1), 100, 1, []string{"name"}},
		{"name with NUL", "Mug\x00", 100, 1, []string{"name"}},
		{"name with a line break", "Mug\nBcc: x", 100, 1, []string{"name"}},
		{"name with a C1 control", "Mug\u0085", 100, 1, []string{"name"}},
		{"negative price", "Mug", -1, 1, []string{"price_cents"}},
		{"absurd price", "Mug", MaxPriceCents + 1, 1, []string{"price_cents"}},
		{"negative stock", "Mug", 100, -1, []string{"available"}},
		{"absurd stock", "Mug", 100, MaxAvailable + 1, []string{"available"}},
		{"everything wrong", "", -1, -1, []string{"name", "price_cents", "available"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateProduct(tt.pname, tt.price, tt.available)
			if len(tt.wantFields) == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			servicetest.RequireFieldErrors(t, err, ErrInvalid, tt.wantFields...)
		})
	}
}

// line is an order line, as the tests write them.
type line struct {
	SKU      string
	Quantity int
}

func demand(lines []line) Demand {
	var d Demand
	for _, l := range lines {
		d.Add(l.SKU, l.Quantity)
	}
	return d
}

func TestDemand(t *testing.T) {
	d := demand([]line{{SKU: "TEA", Quantity: 1}, {SKU: "MUG", Quantity: 2}, {SKU: "TEA", Quantity: 3}})
	if d.Units("TEA") != 4 || d.Units("MUG") != 2 || d.Units("NOPE") != 0 {
		t.Errorf("Units: TEA %d, MUG %d, NOPE %d; want 4, 2, 0", d.Units("TEA"), d.Units("MUG"), d.Units("NOPE"))
	}
	if got, want := d.SKUs(), []string{"MUG", "TEA"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SKUs = %v, want %v", got, want)
	}
	if got := (Demand{}).SKUs(); len(got) != 0 {
		t.Errorf("SKUs of no lines = %v", got)
	}
}

func TestReserve(t *testing.T) {
	stock := map[string]Product{
		"MUG": {SKU: "MUG", Available: 5},
		"TEA": {SKU: "TEA", Available: 1},
		"OUT": {SKU: "OUT", Available: 0, Reserved: 3},
	}
	tests := []struct {
		name        string
		items       []line
		want        ReservationStatus
		wantMissing []string
	}{
		{"all available", []line{{SKU: "MUG", Quantity: 5}, {SKU: "TEA", Quantity: 1}}, StatusReserved, nil},
		{"one short", []line{{SKU: "MUG", Quantity: 1}, {SKU: "TEA", Quantity: 2}}, StatusRejected, []string{"TEA"}},
		{"sold out", []line{{SKU: "OUT", Quantity: 1}}, StatusRejected, []string{"OUT"}},
		{"unknown SKU", []line{{SKU: "MUG", Quantity: 1}, {SKU: "NOPE", Quantity: 1}}, StatusRejected, []string{"NOPE"}},
		{"same SKU on two lines adds up", []line{{SKU: "MUG", Quantity: 3}, {SKU: "MUG", Quantity: 3}}, StatusRejected, []string{"MUG"}},
		{"same SKU on two lines within stock", []line{{SKU: "MUG", Quantity: 2}, {SKU: "MUG", Quantity: 3}}, StatusReserved, nil},
		{"several missing, sorted", []line{{SKU: "TEA", Quantity: 9}, {SKU: "NOPE", Quantity: 1}, {SKU: "MUG", Quantity: 9}}, StatusRejected, []string{"MUG", "NOPE", "TEA"}},
		{"zero quantity", []line{{SKU: "MUG", Quantity: 0}}, StatusRejected, []string{"MUG"}},
		{"negative quantity would add stock", []line{{SKU: "MUG", Quantity: -3}}, StatusRejected, []string{"MUG"}},
		{"negative line hidden by another", []line{{SKU: "MUG", Quantity: 4}, {SKU: "MUG", Quantity: -2}}, StatusRejected, []string{"MUG"}},
		{"absurd quantity", []line{{SKU: "MUG", Quantity: MaxLineQuantity + 1}}, StatusRejected, []string{"MUG"}},
		{"no items", nil, StatusRejected, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Reserve("o1", demand(tt.items), stock)
			if r.Status != tt.want {
				t.Fatalf("status %s, want %s", r.Status, tt.want)
			}
			if !reflect.DeepEqual(r.MissingSKUs, tt.wantMissing) {
				t.Fatalf("missing %#v, want %#v", r.MissingSKUs, tt.wantMissing)
			}
			if r.OrderID != "o1" || !reflect.DeepEqual(r.Demand.SKUs(), demand(tt.items).SKUs()) {
				t.Fatalf("reservation %+v lost the order's demand", r)
			}
		})
	}
}

func TestShip(t *testing.T) {
	tests := []struct {
		name    string
		status  ReservationStatus
		want    ReservationStatus
		wantErr error
	}{
		{"reserved ships", StatusReserved, StatusShipped, nil},
		{"shipped twice", StatusShipped, StatusShipped, ErrAlreadyShipped},
		{"rejected holds nothing", StatusRejected, StatusRejected, ErrNotReserved},
		{"released after a cancellation", StatusReleased, StatusReleased, ErrCancelled},
		{"tombstone of a cancellation", StatusCancelled, StatusCancelled, ErrCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Reservation{OrderID: "o1", Status: tt.status}.Ship()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got.Status != tt.want {
				t.Fatalf("status %s, want %s", got.Status, tt.want)
			}
		})
	}
}

func TestRelease(t *testing.T) {
	tests := []struct {
		name    string
		status  ReservationStatus
		want    ReservationStatus
		wantErr error
	}{
		{"reserved is released", StatusReserved, StatusReleased, nil},
		{"released twice", StatusReleased, StatusReleased, ErrCancelled},
		{"tombstone holds nothing", StatusCancelled, StatusCancelled, ErrCancelled},
		{"shipped units are gone", StatusShipped, StatusShipped, ErrAlreadyShipped},
		{"rejected holds nothing", StatusRejected, StatusRejected, ErrNotReserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Reservation{OrderID: "o1", Status: tt.status}.Release()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got.Status != tt.want {
				t.Fatalf("status %s, want %s", got.Status, tt.want)
			}
		})
	}
}
