package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/web"
)

func TestPutAndGetProduct(t *testing.T) {
	ts := newTestService(t)

	res := ts.Do(t, http.MethodPut, "/products/MUG-1", "application/json", `{"name": "Mug", "price_cents": 1299, "available": 50}`)
	if res.Code != http.StatusCreated {
		t.Fatalf("create: status %d, want 201", res.Code)
	}
	want := productResponse{SKU: "MUG-1", Name: "Mug", PriceCents: 1299, Available: 50, Reserved: 0}
	if got := servicetest.DecodeJSON[productResponse](t, res); got != want {
		t.Fatalf("create: %+v, want %+v", got, want)
	}

	// Reserve some, then replace: reserved is left alone.
	orderID := uuid.Must(uuid.NewV7()).String()
	if err := ts.Apply(t, paymentProcessed(t, orderID, events.Item{SKU: "MUG-1", Quantity: 3, UnitPriceCents: 1299})); err != nil {
		t.Fatal(err)
	}
	res = ts.Do(t, http.MethodPut, "/products/MUG-1", "application/json", `{"name": "Big mug", "price_cents": 1499, "available": 10}`)
	if res.Code != http.StatusOK {
		t.Fatalf("replace: status %d, want 200", res.Code)
	}
	want = productResponse{SKU: "MUG-1", Name: "Big mug", PriceCents: 1499, Available: 10, Reserved: 3}
	if got := servicetest.DecodeJSON[productResponse](t, res); got != want {
		t.Fatalf("replace: %+v, want %+v", got, want)
	}

	res = ts.Do(t, http.MethodGet, "/products/MUG-1", "", "")
	if res.Code != http.StatusOK {
		t.Fatalf("get: status %d", res.Code)
	}
	if got := servicetest.DecodeJSON[productResponse](t, res); got != want {
		t.Fatalf("get: %+v, want %+v", got, want)
	}

	// Every PUT emitted ProductUpdated, keyed by SKU, with the new state.
	out := servicetest.OutboxEvents(t, ts.Pool, "MUG-1")
	if len(out) != 2 {
		t.Fatalf("%d events for MUG-1, want 2", len(out))
	}
	for i, wantName := range []string{"Mug", "Big mug"} {
		if out[i].Topic != events.TopicInventory || out[i].Envelope.Type != events.TypeProductUpdated || out[i].Envelope.Subject != "MUG-1" {
			t.Fatalf("event %d: %s on %s", i, out[i].Envelope.Type, out[i].Topic)
		}
		got, err := events.Decode[events.ProductUpdated](out[i].Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if got.SKU != "MUG-1" || got.Name != wantName {
			t.Fatalf("event %d: %+v", i, got)
		}
	}
}

func TestPutProductRejectsBadInput(t *testing.T) {
	const ok = `{"name": "Mug", "price_cents": 1299, "available": 50}`
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		status      int
		fields      []string // fields the problem must name
	}{
		{"malformed JSON", "/products/MUG", "application/json", `{"name": "Mug",`, 400, nil},
		{"not an object", "/products/MUG", "application/json", `"Mug"`, 400, nil},
		{"empty body", "/products/MUG", "application/json", ``, 400, nil},
		{"unknown field", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": 1, "available": 1, "reserved": 0}`, 400, nil},
		{"trailing data", "/products/MUG", "application/json", ok + `x`, 400, nil},
		{"price as a string", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": "12.99", "available": 50}`, 400, []string{"price_cents"}},
		{"fractional stock", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": 1299, "available": 0.5}`, 400, []string{"available"}},
		{"stock beyond int", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": 1299, "available": 1e30}`, 400, []string{"available"}},
		{"wrong content type", "/products/MUG", "application/xml", ok, 415, nil},
		{"body too large", "/products/MUG", "application/json", `{"name": "` + strings.Repeat("m", web.MaxBodyBytes) + `", "price_cents": 1, "available": 1}`, 413, nil},
		{"all fields missing", "/products/MUG", "application/json", `{}`, 422, []string{"name", "price_cents", "available"}},
		{"null name", "/products/MUG", "application/json", `{"name": null, "price_cents": 1299, "available": 50}`, 422, []string{"name"}},
		{"missing stock, bad price", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": -1}`, 422, []string{"price_cents", "available"}},
		{"empty name", "/products/MUG", "application/json", `{"name": "", "price_cents": 1299, "available": 50}`, 422, []string{"name"}},
		{"name too long", "/products/MUG", "application/json", `{"name": "` + strings.Repeat("m", 201) + `", "price_cents": 1299, "available": 50}`, 422, []string{"name"}},
		{"negative price", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": -1299, "available": 50}`, 422, []string{"price_cents"}},
		{"absurd price", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": 100000001, "available": 50}`, 422, []string{"price_cents"}},
		{"negative stock", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": 1299, "available": -1}`, 422, []string{"available"}},
		{"absurd stock", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": 1299, "available": 1000001}`, 422, []string{"available"}},
		{"SQL-looking sku", "/products/MUG';DELETE%20FROM%20products;--", "application/json", ok, 400, nil},
		{"very long sku", "/products/" + strings.Repeat("M", 65), "application/json", ok, 400, nil},
		{"sku with a space", "/products/MUG%201", "application/json", ok, 400, nil},
	}
	ts := newTestService(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := servicetest.RequireProblem(t, ts.Do(t, http.MethodPut, tt.path, tt.contentType, tt.body), tt.status)
			for _, f := range tt.fields {
				if p.Errors[f] == "" {
					t.Errorf("problem %+v does not name %s", p, f)
				}
			}
			servicetest.RequireEmpty(t, ts.Pool, "products", "outbox")
		})
	}
}

func TestGetProductNotFound(t *testing.T) {
	ts := newTestService(t)
	for _, path := range []string{
		"/products/NOPE",
		"/products/" + strings.Repeat("x", 300),
		"/products/x'%20OR%20'1'='1",
	} {
		servicetest.RequireProblem(t, ts.Do(t, http.MethodGet, path, "", ""), http.StatusNotFound)
	}
}

func TestMetricsExposed(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 1)
	for i := 0; i < 2; i++ { // one reserved, one unavailable
		if err := ts.Apply(t, paymentProcessed(t, uuid.Must(uuid.NewV7()).String(), events.Item{SKU: "MUG", Quantity: 1})); err != nil {
			t.Fatal(err)
		}
	}
	body := ts.Do(t, http.MethodGet, "/metrics", "", "").Body.Bytes()
	for _, want := range []string{`reservations_total{outcome="reserved"} 1`, `reservations_total{outcome="unavailable"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
