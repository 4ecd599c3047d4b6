package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/web"
)

func TestPutAndGetProduct(t *testing.T) {
	ts := newTestService(t)
	put := func(body string, header ...string) *httptest.ResponseRecorder {
		t.Helper()
		return servicetest.Request(t, ts.Handler, http.MethodPut, "/products/MUG-1", body, append([]string{"Content-Type", "application/json"}, header...)...)
	}
	requireProduct := func(step string, res *httptest.ResponseRecorder, status int, want productResponse) {
		t.Helper()
		if res.Code != status {
			t.Fatalf("%s: status %d, want %d; %s", step, res.Code, status, res.Body)
		}
		if got := servicetest.DecodeJSON[productResponse](t, res); got != want {
			t.Fatalf("%s: %+v, want %+v", step, got, want)
		}
		if got, wantTag := res.Header().Get("ETag"), fmt.Sprintf(`"%d"`, want.Version); got != wantTag {
			t.Fatalf("%s: ETag %s, want %s", step, got, wantTag)
		}
	}

	requireProduct("create", put(`{"name": "Mug", "price_cents": 1299, "available": 50}`), http.StatusCreated,
		productResponse{SKU: "MUG-1", Name: "Mug", PriceCents: 1299, Available: 50, Reserved: 0, Version: 1})

	// A reservation changes the product, and so its version.
	orderID := uuid.Must(uuid.NewV7()).String()
	if err := ts.Apply(t, paymentProcessed(t, orderID, events.Item{SKU: "MUG-1", Quantity: 3, UnitPriceCents: 1299})); err != nil {
		t.Fatal(err)
	}
	requireProduct("get after a reservation", ts.Do(t, http.MethodGet, "/products/MUG-1", "", ""), http.StatusOK,
		productResponse{SKU: "MUG-1", Name: "Mug", PriceCents: 1299, Available: 47, Reserved: 3, Version: 2})

	// Setting the stock of an existing product without saying which
	// version it was computed from would overwrite the reservation.
	p := servicetest.RequireProblem(t, put(`{"name": "Big mug", "price_cents": 1499, "available": 10}`), http.StatusPreconditionRequired)
	if p.Title != "If-Match required" {
		t.Fatalf("problem %+v", p)
	}
	// Name and price alone: the stock stays as it is.
	requireProduct("replace name and price", put(`{"name": "Big mug", "price_cents": 1499}`), http.StatusOK,
		productResponse{SKU: "MUG-1", Name: "Big mug", PriceCents: 1499, Available: 47, Reserved: 3, Version: 3})
	// The stock under If-Match: a stale version is refused...
	for _, stale := range []string{`"2"`, `"1", "2"`, `W/"3"`, `3`, `"x"`} {
		servicetest.RequireProblem(t, put(`{"name": "Big mug", "price_cents": 1499, "available": 10}`, "If-Match", stale), http.StatusPreconditionFailed)
	}
	// ...the current one is taken, reserved units left alone.
	requireProduct("set the stock under If-Match", put(`{"name": "Big mug", "price_cents": 1499, "available": 10}`, "If-Match", `"1", "3"`), http.StatusOK,
		productResponse{SKU: "MUG-1", Name: "Big mug", PriceCents: 1499, Available: 10, Reserved: 3, Version: 4})
	// Repeating a PUT that leaves the stock as it is needs no If-Match
	// (sagashopctl seed does it on every start).
	requireProduct("same stock again", put(`{"name": "Big mug", "price_cents": 1499, "available": 10}`), http.StatusOK,
		productResponse{SKU: "MUG-1", Name: "Big mug", PriceCents: 1499, Available: 10, Reserved: 3, Version: 5})
	requireProduct("If-Match: *", put(`{"name": "Big mug", "price_cents": 1499, "available": 12}`, "If-Match", "*"), http.StatusOK,
		productResponse{SKU: "MUG-1", Name: "Big mug", PriceCents: 1499, Available: 12, Reserved: 3, Version: 6})
	requireProduct("get", ts.Do(t, http.MethodGet, "/products/MUG-1", "", ""), http.StatusOK,
		productResponse{SKU: "MUG-1", Name: "Big mug", PriceCents: 1499, Available: 12, Reserved: 3, Version: 6})

	// If-Match on a product that does not exist matches nothing; a new
	// product needs its stock.
	servicetest.RequireProblem(t, servicetest.Request(t, ts.Handler, http.MethodPut, "/products/NEW", `{"name": "New", "price_cents": 1, "available": 1}`,
		"If-Match", "*"), http.StatusPreconditionFailed)
	p = servicetest.RequireProblem(t, ts.Do(t, http.MethodPut, "/products/NEW", "application/json", `{"name": "New", "price_cents": 1}`), http.StatusUnprocessableEntity)
	if p.Errors["available"] == "" {
		t.Fatalf("problem %+v does not name available", p)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM products WHERE sku = 'NEW'`); n != 0 {
		t.Fatalf("refused PUTs created the product")
	}

	// Every PUT that went through emitted ProductUpdated, keyed by SKU,
	// with the new state; the refused ones nothing.
	out := servicetest.OutboxEvents(t, ts.Pool, "MUG-1")
	wantNames := []string{"Mug", "Big mug", "Big mug", "Big mug", "Big mug"}
	if len(out) != len(wantNames) {
		t.Fatalf("%d events for MUG-1, want %d", len(out), len(wantNames))
	}
	for i, wantName := range wantNames {
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
	if n := len(servicetest.Outbox(t, ts.Pool)); n != len(wantNames)+1 { // and InventoryReserved
		t.Fatalf("%d events in the outbox, want %d", n, len(wantNames)+1)
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
		{"all fields missing", "/products/MUG", "application/json", `{}`, 422, []string{"name", "price_cents"}},
		{"new product without stock", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": 1299}`, 422, []string{"available"}},
		{"null name", "/products/MUG", "application/json", `{"name": null, "price_cents": 1299, "available": 50}`, 422, []string{"name"}},
		{"bad stock, bad price", "/products/MUG", "application/json", `{"name": "Mug", "price_cents": -1, "available": -1}`, 422, []string{"price_cents", "available"}},
		{"empty name", "/products/MUG", "application/json", `{"name": "", "price_cents": 1299, "available": 50}`, 422, []string{"name"}},
		{"name too long", "/products/MUG", "application/json", `{"name": "` + strings.Repeat("m", 201) + `", "price_cents": 1299, "available": 50}`, 422, []string{"name"}},
		// PostgreSQL's text cannot hold NUL: this was a 500 (e2e TestBadInput).
		{"name with NUL", "/products/MUG", "application/json", `{"name": "Mug\u0000", "price_cents": 1299, "available": 50}`, 422, []string{"name"}},
		{"name with a control character", "/products/MUG", "application/json", `{"name": "Mug\u001b[31m", "price_cents": 1299, "available": 50}`, 422, []string{"name"}},
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
