package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
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
			var v ValidationError
			if !errors.As(err, &v) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v: want a ValidationError matching ErrInvalid", err)
			}
			if len(v) != len(tt.wantFields) {
				t.Fatalf("fields %v, want %v", v, tt.wantFields)
			}
			for _, f := range tt.wantFields {
				if v[f] == "" {
					t.Errorf("no message for %s in %v", f, v)
				}
			}
		})
	}
}

func TestDemandAndSKUs(t *testing.T) {
	items := []Item{{SKU: "TEA", Quantity: 1}, {SKU: "MUG", Quantity: 2}, {SKU: "TEA", Quantity: 3}}
	if got, want := Demand(items), map[string]int{"TEA": 4, "MUG": 2}; !reflect.DeepEqual(got, want) {
		t.Errorf("Demand = %v, want %v", got, want)
	}
	if got, want := SKUs(items), []string{"MUG", "TEA"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SKUs = %v, want %v", got, want)
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
		items       []Item
		want        ReservationStatus
		wantMissing []string
	}{
		{"all available", []Item{{SKU: "MUG", Quantity: 5}, {SKU: "TEA", Quantity: 1}}, StatusReserved, nil},
		{"one short", []Item{{SKU: "MUG", Quantity: 1}, {SKU: "TEA", Quantity: 2}}, StatusRejected, []string{"TEA"}},
		{"sold out", []Item{{SKU: "OUT", Quantity: 1}}, StatusRejected, []string{"OUT"}},
		{"unknown SKU", []Item{{SKU: "MUG", Quantity: 1}, {SKU: "NOPE", Quantity: 1}}, StatusRejected, []string{"NOPE"}},
		{"same SKU on two lines adds up", []Item{{SKU: "MUG", Quantity: 3}, {SKU: "MUG", Quantity: 3}}, StatusRejected, []string{"MUG"}},
		{"same SKU on two lines within stock", []Item{{SKU: "MUG", Quantity: 2}, {SKU: "MUG", Quantity: 3}}, StatusReserved, nil},
		{"several missing, sorted", []Item{{SKU: "TEA", Quantity: 9}, {SKU: "NOPE", Quantity: 1}, {SKU: "MUG", Quantity: 9}}, StatusRejected, []string{"MUG", "NOPE", "TEA"}},
		{"zero quantity", []Item{{SKU: "MUG", Quantity: 0}}, StatusRejected, []string{"MUG"}},
		{"negative quantity would add stock", []Item{{SKU: "MUG", Quantity: -3}}, StatusRejected, []string{"MUG"}},
		{"negative line hidden by another", []Item{{SKU: "MUG", Quantity: 4}, {SKU: "MUG", Quantity: -2}}, StatusRejected, []string{"MUG"}},
		{"absurd quantity", []Item{{SKU: "MUG", Quantity: MaxLineQuantity + 1}}, StatusRejected, []string{"MUG"}},
		{"no items", nil, StatusRejected, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Reserve("o1", tt.items, stock)
			if r.Status != tt.want {
				t.Fatalf("status %s, want %s", r.Status, tt.want)
			}
			if !reflect.DeepEqual(r.MissingSKUs, tt.wantMissing) {
				t.Fatalf("missing %#v, want %#v", r.MissingSKUs, tt.wantMissing)
			}
			if r.OrderID != "o1" || r.Items == nil || len(r.Items) != len(tt.items) {
				t.Fatalf("reservation %+v lost the order", r)
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
