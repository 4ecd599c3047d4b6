package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/web"
)

// The fuzz targets of the order API, through its real router on a schema
// of the local PostgreSQL. Their seed corpus is in testdata/fuzz/<target>;
// `go test` runs it as ordinary tests, `go test -run '^$' -fuzz
// '^FuzzCreateOrder$' ./services/order/` explores.

// fuzzCatalog is the catalog copy every FuzzCreateOrder input is priced
// from: gold at MaxMoneyCents, so two of it pass the order total's limit.
var fuzzCatalog = map[string]int64{"mug": 1299, "tea": 450, "gold": MaxMoneyCents}

func newFuzzService(f *testing.F) *servicetest.Service {
	f.Helper()
	te := servicetest.New(f, serviceName, migrationsFS)
	svc, err := newService(te.Pool, te.Logger, te.Registry, noop.NewTracerProvider(), testDeadline)
	if err != nil {
		f.Fatal(err)
	}
	for sku, price := range fuzzCatalog {
		if _, err := te.Pool.Exec(context.Background(),
			`INSERT INTO products (sku, name, price_cents, updated_at) VALUES ($1, $2, $3, now())`, sku, "Product "+sku, price); err != nil {
			f.Fatal(err)
		}
	}
	return te.Service(svc.routes, svc.handlers())
}

// FuzzCreateOrder posts body with contentType and an Idempotency-Key (none
// when empty, twice when keyTwice) to POST /orders, on an empty order
// table. It is answered 201, 400, 413, 415 or 422, never 5xx; a 4xx
// stores nothing. A 201 is for a request within every documented limit
// (customer id and SKUs as web.CheckID says, an email address of at most
// MaxEmailLen, 1 to MaxItems items of 1 to MaxQuantity units, each SKU
// once and in the catalog, a total of at most MaxMoneyCents) and stores one
// order at that total; with a key, sending it again is answered the same,
// marked replayed, and stores nothing more.
func FuzzCreateOrder(f *testing.F) {
	svc := newFuzzService(f)
	f.Fuzz(func(t *testing.T, contentType string, body []byte, key string, keyTwice bool) {
		ctx := context.Background()
		if _, err := svc.Pool.Exec(ctx, `DELETE FROM outbox; DELETE FROM order_items; DELETE FROM idempotency_keys; DELETE FROM orders`); err != nil {
			t.Fatal(err)
		}
		post := func() *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, "/orders", bytes.NewReader(body))
			if contentType != "" {
				r.Header.Set("Content-Type", contentType)
			}
			if key != "" {
				r.Header.Add("Idempotency-Key", key)
				if keyTwice {
					r.Header.Add("Idempotency-Key", key)
				}
			}
			return servicetest.Serve(t, svc.Handler, r)
		}
		rec := post()
		orders := servicetest.Count(t, svc.Pool, `SELECT count(*) FROM orders`)
		switch rec.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			servicetest.RequireProblem(t, rec, rec.Code)
			servicetest.RequireEmpty(t, svc.Pool, "orders", "order_items", "idempotency_keys", "outbox")
			return
		case http.StatusCreated:
		default:
			t.Fatalf("POST /orders = %d %s", rec.Code, rec.Body)
		}
		if orders != 1 {
			t.Fatalf("a 201 stored %d orders", orders)
		}
		keyOK := key != "" && !keyTwice && ValidIdempotencyKey(key)
		if key != "" && !keyOK {
			t.Fatalf("201 for the Idempotency-Key %q given %d times", key, map[bool]int{false: 1, true: 2}[keyTwice])
		}

		var req NewOrder
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("201 for a body encoding/json does not read: %v", err)
		}
		var total int64
		seen := map[string]bool{}
		problem := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("201 for %q: "+format, append([]any{body}, args...)...)
		}
		if !web.CheckID(req.CustomerID) {
			problem("customer id %q", req.CustomerID)
		}
		if addr, err := mail.ParseAddress(req.Email); len(req.Email) > MaxEmailLen || err != nil || addr.Address != req.Email {
			problem("email %q", req.Email)
		}
		if len(req.Items) < 1 || len(req.Items) > MaxItems {
			problem("%d items", len(req.Items))
		}
		for _, it := range req.Items {
			price, ok := fuzzCatalog[it.SKU]
			if !ok || seen[it.SKU] || it.Quantity < 1 || it.Quantity > MaxQuantity {
				problem("item %+v", it)
			}
			seen[it.SKU] = true
			total += int64(it.Quantity) * price
		}
		if total > MaxMoneyCents {
			problem("total %d", total)
		}
		created := servicetest.DecodeJSON[createdBody](t, rec)
		if created.TotalCents != total || created.Status != string(StatusPending) || created.Currency != Currency ||
			rec.Header().Get("Location") != "/orders/"+created.OrderID {
			t.Fatalf("201 %s (Location %q), want total %d, PENDING, USD", rec.Body, rec.Header().Get("Location"), total)
		}
		if !keyOK {
			return
		}
		again := post()
		if again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" || again.Body.String() != rec.Body.String() {
			t.Fatalf("the same request with key %q again = %d %s (replayed %q), want %s", key, again.Code, again.Body,
				again.Header().Get("Idempotent-Replayed"), rec.Body)
		}
		if n := servicetest.Count(t, svc.Pool, `SELECT count(*) FROM orders`); n != 1 {
			t.Fatalf("a replay stored an order: %d", n)
		}
	})
}

// FuzzGetOrder reads GET /orders/{id} with id path-escaped, as a client
// sends it: 200 only for a UUID in canonical form (an order placed in the
// setup, in any case), 404 for anything else, never another status.
func FuzzGetOrder(f *testing.F) {
	svc := newFuzzService(f)
	rec := servicetest.Request(f, svc.Handler, http.MethodPost, "/orders",
		`{"customer_id": "c-1", "email": "c1@example.com", "items": [{"sku": "mug", "quantity": 1}]}`, "Content-Type", "application/json")
	if rec.Code != http.StatusCreated {
		f.Fatalf("POST /orders = %d %s", rec.Code, rec.Body)
	}
	placed := servicetest.DecodeJSON[createdBody](f, rec).OrderID
	f.Fuzz(func(t *testing.T, id string) {
		rec := servicetest.Serve(t, svc.Handler, httptest.NewRequest(http.MethodGet, "/orders/"+url.PathEscape(id), nil))
		switch {
		case rec.Code == http.StatusOK:
			if strings.ToLower(id) != placed {
				t.Fatalf("GET /orders/%q = 200 %s", id, rec.Body)
			}
		case rec.Code == http.StatusNotFound:
			if strings.ToLower(id) == placed {
				t.Fatalf("GET /orders/%q = 404", id)
			}
		default:
			t.Fatalf("GET /orders/%q = %d %s", id, rec.Code, rec.Body)
		}
	})
}
