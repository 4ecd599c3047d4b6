package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// restockHTTP posts a restock of sku with body, and header pairs.
func (ts *testService) restockHTTP(t *testing.T, sku, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	return servicetest.Request(t, ts.Handler, http.MethodPost, "/products/"+sku+"/restock", body,
		append([]string{"Content-Type", "application/json"}, header...)...)
}

func TestRestock(t *testing.T) {
	ts := newTestService(t)
	ts.stock(t, "MUG", 10)
	if err := ts.Apply(t, paymentProcessed(t, uuid.Must(uuid.NewV7()).String(), events.Item{SKU: "MUG", Quantity: 4})); err != nil {
		t.Fatal(err)
	}

	res := ts.restockHTTP(t, "MUG", `{"quantity": 5}`)
	if res.Code != http.StatusOK {
		t.Fatalf("restock: %d %s", res.Code, res.Body)
	}
	got := servicetest.DecodeJSON[productResponse](t, res)
	if got.Available != 11 || got.Reserved != 4 || got.Version != 3 || res.Header().Get("ETag") != `"3"` {
		t.Fatalf("restock: %+v, ETag %s; want 11 available, 4 reserved, version 3", got, res.Header().Get("ETag"))
	}
	ts.wantStock(t, "MUG", 11, 4)

	// Under If-Match a restock applies once: its retry finds the version
	// it made and is refused.
	if res := ts.restockHTTP(t, "MUG", `{"quantity": 2}`, "If-Match", `"3"`); res.Code != http.StatusOK {
		t.Fatalf("restock under If-Match: %d %s", res.Code, res.Body)
	}
	servicetest.RequireProblem(t, ts.restockHTTP(t, "MUG", `{"quantity": 2}`, "If-Match", `"3"`), http.StatusPreconditionFailed)
	ts.wantStock(t, "MUG", 13, 4)

	tests := []struct {
		name, sku, body string
		status          int
		field           string
	}{
		{"zero", "MUG", `{"quantity": 0}`, 422, "quantity"},
		{"negative", "MUG", `{"quantity": -3}`, 422, "quantity"},
		{"absurd", "MUG", `{"quantity": 1000001}`, 422, "quantity"},
		{"past the most a product holds", "MUG", `{"quantity": 999990}`, 422, "quantity"},
		{"missing", "MUG", `{}`, 422, "quantity"},
		{"as a string", "MUG", `{"quantity": "5"}`, 400, "quantity"},
		{"fractional", "MUG", `{"quantity": 1.5}`, 400, "quantity"},
		{"unknown field", "MUG", `{"quantity": 1, "available": 5}`, 400, ""},
		{"unknown product", "NOPE", `{"quantity": 1}`, 404, ""},
		{"bad sku", "MUG%20X", `{"quantity": 1}`, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := servicetest.RequireProblem(t, ts.restockHTTP(t, tt.sku, tt.body), tt.status)
			if tt.field != "" && p.Errors[tt.field] == "" {
				t.Fatalf("problem %+v does not name %s", p, tt.field)
			}
		})
	}
	ts.wantStock(t, "MUG", 13, 4)
	servicetest.RequireProblem(t, ts.restockHTTP(t, "NOPE", `{"quantity": 1}`, "If-Match", "*"), http.StatusPreconditionFailed)

	// A restock changes no catalog entry: it emits nothing.
	if n := len(servicetest.OutboxEvents(t, ts.Pool, "MUG")); n != 1 {
		t.Fatalf("%d events for MUG, want the one of its creation", n)
	}
}

// TestRestockDuringReservationsLosesNothing runs restocks over HTTP, both
// kinds (POST restock, and PUT of a stock read before, under If-Match,
// read again on 412), while paid orders reserve and shipped ones release
// the same products, all at once: every unit is accounted for at the end.
func TestRestockDuringReservationsLosesNothing(t *testing.T) {
	ts := newTestService(t)
	const initial = 300
	skus := []string{"CUP", "PEN"}
	for _, sku := range skus {
		ts.stock(t, sku, initial)
	}
	const orders, restocks, restockQty, rereads = 60, 30, 7, 10

	var wg sync.WaitGroup
	errs := make(chan error, orders*2+restocks*len(skus))
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uuid.Must(uuid.NewV7()).String()
			items := []events.Item{{SKU: "CUP", Quantity: 1 + i%3}, {SKU: "PEN", Quantity: 1 + i%2}}
			if err := ts.Apply(t, paymentProcessed(t, id, items...)); err != nil {
				errs <- fmt.Errorf("reserve order %d: %w", i, err)
				return
			}
			if i%2 == 0 {
				if err := ts.Apply(t, orderShipped(t, id)); err != nil {
					errs <- fmt.Errorf("ship order %d: %w", i, err)
				}
			}
		}()
	}
	for i := range restocks {
		for _, sku := range skus {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if res := ts.restockHTTP(t, sku, fmt.Sprintf(`{"quantity": %d}`, restockQty)); res.Code != http.StatusOK {
					errs <- fmt.Errorf("restock %d of %s: %d %s", i, sku, res.Code, strings.TrimSpace(res.Body.String()))
				}
			}()
		}
	}
	// A read-modify-write of the stock, as a client that counted a
	// delivery does: GET, add, PUT with the ETag read; a 412 means the
	// product changed in between, so read again.
	var stale atomic.Int64
	for i := range rereads {
		for _, sku := range skus {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for attempt := 0; attempt < 500; attempt++ {
					res := ts.Do(t, http.MethodGet, "/products/"+sku, "", "")
					p := servicetest.DecodeJSON[productResponse](t, res)
					body := fmt.Sprintf(`{"name": %q, "price_cents": %d, "available": %d}`, p.Name, p.PriceCents, p.Available+restockQty)
					put := servicetest.Request(t, ts.Handler, http.MethodPut, "/products/"+sku, body,
						"Content-Type", "application/json", "If-Match", res.Header().Get("ETag"))
					switch put.Code {
					case http.StatusOK:
						return
					case http.StatusPreconditionFailed:
						stale.Add(1)
						continue
					}
					errs <- fmt.Errorf("read-modify-write %d of %s: %d %s", i, sku, put.Code, strings.TrimSpace(put.Body.String()))
					return
				}
				errs <- fmt.Errorf("read-modify-write %d of %s: still stale after 500 reads", i, sku)
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("read-modify-writes refused as stale and read again: %d", stale.Load())

	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM reservations WHERE status = 'RESERVED' OR status = 'SHIPPED'`); n != orders {
		t.Fatalf("%d orders reserved, want all %d", n, orders)
	}
	for _, sku := range skus {
		shipped := servicetest.Count(t, ts.Pool, `
			SELECT coalesce(sum((i->>'quantity')::int), 0) FROM reservations, jsonb_array_elements(items) i
			WHERE status = 'SHIPPED' AND i->>'sku' = $1`, sku)
		held := servicetest.Count(t, ts.Pool, `
			SELECT coalesce(sum((i->>'quantity')::int), 0) FROM reservations, jsonb_array_elements(items) i
			WHERE status = 'RESERVED' AND i->>'sku' = $1`, sku)
		p, err := ts.productVersion(t.Context(), sku)
		if err != nil {
			t.Fatal(err)
		}
		if p.Reserved != held {
			t.Errorf("%s: %d reserved, the reservations hold %d", sku, p.Reserved, held)
		}
		restocked := (restocks + rereads) * restockQty
		if got, want := p.Available+p.Reserved+shipped, initial+restocked; got != want {
			t.Errorf("%s: available %d + reserved %d + shipped %d = %d, want initial %d + restocked %d = %d",
				sku, p.Available, p.Reserved, shipped, got, initial, restocked, want)
		}
		// Every change counted in the version: the creation, each restock,
		// each reservation and each release.
		if want := int64(1 + restocks + rereads + orders + orders/2); p.Version != want {
			t.Errorf("%s: version %d, want %d", sku, p.Version, want)
		}
	}
}

func TestProductWritesWhileTheDatabaseIsDown(t *testing.T) {
	env := servicetest.New(t, serviceName, migrationFiles)
	// The service's pool points at a port where nothing listens.
	down, err := pgxpool.New(t.Context(), fmt.Sprintf("postgres://inventory@127.0.0.1:%d/sagashop?connect_timeout=2", testenv.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	svc, err := newService(down, env.Logger, env.Registry)
	if err != nil {
		t.Fatal(err)
	}
	ts := env.Service(svc.routes, svc.handlers())
	for _, req := range []struct{ method, path, body string }{
		{http.MethodPut, "/products/MUG", `{"name": "Mug", "price_cents": 1299, "available": 5}`},
		{http.MethodPost, "/products/MUG/restock", `{"quantity": 5}`},
		{http.MethodGet, "/products/MUG", ""},
	} {
		res := ts.Do(t, req.method, req.path, "application/json", req.body)
		servicetest.RequireProblem(t, res, http.StatusServiceUnavailable)
		if res.Header().Get("Retry-After") == "" {
			t.Fatalf("%s %s: no Retry-After", req.method, req.path)
		}
	}
}
