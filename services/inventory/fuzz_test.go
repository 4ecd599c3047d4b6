package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/web"
)

// The fuzz targets of the catalog API, through its real router on a schema
// of the local PostgreSQL. Their seed corpus is in testdata/fuzz/<target>;
// `go test` runs it as ordinary tests, `go test -run '^$' -fuzz
// '^FuzzPutProduct$' ./services/inventory/` explores.

// fuzzMugAvailable is the stock of mug, the one product of the catalog
// every iteration starts from.
const fuzzMugAvailable = 10

type fuzzCatalog struct {
	*servicetest.Service
	svc *service
}

func newFuzzCatalog(f *testing.F) fuzzCatalog {
	f.Helper()
	env := servicetest.New(f, serviceName, migrationFiles)
	svc, err := newService(env.Pool, env.Logger, env.Registry)
	if err != nil {
		f.Fatal(err)
	}
	return fuzzCatalog{Service: env.Service(svc.routes, svc.handlers()), svc: svc}
}

// reset leaves the catalog with only mug, 10 available, and returns its
// version.
func (c fuzzCatalog) reset(t testing.TB) int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Pool.Exec(ctx, `DELETE FROM outbox; DELETE FROM reservations; DELETE FROM products`); err != nil {
		t.Fatal(err)
	}
	available := fuzzMugAvailable
	p, _, err := c.svc.saveProduct(ctx, productChange{SKU: "mug", Name: "Mug", PriceCents: 1299, Available: &available})
	if err != nil {
		t.Fatal(err)
	}
	return p.Version
}

func (c fuzzCatalog) send(t testing.TB, method, sku, contentType string, body []byte, ifMatch string, suffix string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "/products/"+url.PathEscape(sku)+suffix, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if ifMatch != "" {
		r.Header.Set("If-Match", ifMatch)
	}
	return servicetest.Serve(t, c.Handler, r)
}

// stored returns the product as GET /products/{sku} reads it, with its ETag.
func (c fuzzCatalog) stored(t testing.TB, sku string) (productResponse, string, bool) {
	t.Helper()
	rec := c.send(t, http.MethodGet, sku, "", nil, "", "")
	if rec.Code == http.StatusNotFound {
		return productResponse{}, "", false
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /products/%q = %d %s", sku, rec.Code, rec.Body)
	}
	return servicetest.DecodeJSON[productResponse](t, rec), rec.Header().Get("ETag"), true
}

// FuzzPutProduct puts body with contentType and If-Match (none when empty)
// to PUT /products/{sku}, the SKU path-escaped, on a catalog holding only
// mug. It is answered 200, 201, 400, 404 (no route), 412, 413, 415, 422 or
// 428, never 5xx; anything but a 2xx leaves mug as it was and adds
// nothing. A 2xx is for a SKU web.CheckID accepts, a name of 1 to
// MaxNameLength characters not all blank, a price from 0 to MaxPriceCents
// and an available count (required for a new product) from 0 to
// MaxAvailable; GET then reads what was put, under the ETag the response
// gave. A 201 is a new product; mug's stock changes only under an If-Match
// that names its version (or "*").
func FuzzPutProduct(f *testing.F) {
	c := newFuzzCatalog(f)
	f.Fuzz(func(t *testing.T, sku, contentType string, body []byte, ifMatch string) {
		version := c.reset(t)
		rec := c.send(t, http.MethodPut, sku, contentType, body, ifMatch, "")
		switch rec.Code {
		case http.StatusOK, http.StatusCreated:
		case http.StatusBadRequest, http.StatusNotFound, http.StatusPreconditionFailed, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity, http.StatusPreconditionRequired:
			if rec.Code != http.StatusNotFound || sku != "" {
				servicetest.RequireProblem(t, rec, rec.Code)
			}
			if mug, _, _ := c.stored(t, "mug"); mug.Version != version || mug.Available != fuzzMugAvailable {
				t.Fatalf("a %d changed mug: %+v", rec.Code, mug)
			}
			if n := servicetest.Count(t, c.Pool, `SELECT count(*) FROM products`); n != 1 {
				t.Fatalf("a %d left %d products", rec.Code, n)
			}
			return
		default:
			t.Fatalf("PUT /products/%q = %d %s", sku, rec.Code, rec.Body)
		}
		if !web.CheckID(sku) {
			t.Fatalf("%d for the SKU %q", rec.Code, sku)
		}
		var req putProductRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Name == nil || req.PriceCents == nil {
			t.Fatalf("%d for %q: %v", rec.Code, body, err)
		}
		if n := utf8.RuneCountInString(*req.Name); n < 1 || n > MaxNameLength || strings.TrimSpace(*req.Name) == "" {
			t.Fatalf("%d for the name %q", rec.Code, *req.Name)
		}
		if *req.PriceCents < 0 || *req.PriceCents > MaxPriceCents {
			t.Fatalf("%d for the price %d", rec.Code, *req.PriceCents)
		}
		if req.Available != nil && (*req.Available < 0 || *req.Available > MaxAvailable) {
			t.Fatalf("%d for available %d", rec.Code, *req.Available)
		}
		if created := rec.Code == http.StatusCreated; created != (sku != "mug") || created && req.Available == nil {
			t.Fatalf("%d for %q with available %v", rec.Code, sku, req.Available)
		}
		if sku == "mug" && req.Available != nil && *req.Available != fuzzMugAvailable &&
			ifMatch != "*" && !strings.Contains(ifMatch, etag(version)) {
			t.Fatalf("mug's stock changed to %d under If-Match %q (its ETag was %s)", *req.Available, ifMatch, etag(version))
		}
		got := servicetest.DecodeJSON[productResponse](t, rec)
		back, tag, ok := c.stored(t, sku)
		if !ok || back != got || tag != rec.Header().Get("ETag") || tag != etag(got.Version) {
			t.Fatalf("PUT answered %+v (ETag %s), GET reads %+v (ETag %s)", got, rec.Header().Get("ETag"), back, tag)
		}
		if got.Name != *req.Name || got.PriceCents != *req.PriceCents || req.Available != nil && got.Available != *req.Available {
			t.Fatalf("stored %+v for %q", got, body)
		}
	})
}

// FuzzRestock posts body to POST /products/{sku}/restock with If-Match
// (none when empty), on a catalog holding only mug with 10 available. It is
// answered 200, 400, 404, 412, 413, 415 or 422, never 5xx; anything but a
// 200 leaves mug as it was. A 200 is for mug and a quantity from 1 to
// MaxAvailable that keeps available within MaxAvailable, and adds exactly
// it.
func FuzzRestock(f *testing.F) {
	c := newFuzzCatalog(f)
	f.Fuzz(func(t *testing.T, sku, contentType string, body []byte, ifMatch string) {
		version := c.reset(t)
		rec := c.send(t, http.MethodPost, sku, contentType, body, ifMatch, "/restock")
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusNotFound, http.StatusPreconditionFailed, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			if mug, _, _ := c.stored(t, "mug"); mug.Version != version || mug.Available != fuzzMugAvailable {
				t.Fatalf("a %d changed mug: %+v", rec.Code, mug)
			}
			return
		default:
			t.Fatalf("POST /products/%q/restock = %d %s", sku, rec.Code, rec.Body)
		}
		var req restockRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Quantity == nil {
			t.Fatalf("200 for %q: %v", body, err)
		}
		q := *req.Quantity
		if sku != "mug" || q < 1 || q > MaxAvailable || fuzzMugAvailable+q > MaxAvailable {
			t.Fatalf("200 for %q with quantity %d", sku, q)
		}
		if mug, _, _ := c.stored(t, "mug"); mug.Available != fuzzMugAvailable+q {
			t.Fatalf("restocked %d onto %d: %d available", q, fuzzMugAvailable, mug.Available)
		}
	})
}

// FuzzGetProduct reads GET /products/{sku} with the SKU path-escaped: 200
// for mug, 404 for anything else, never another status.
func FuzzGetProduct(f *testing.F) {
	c := newFuzzCatalog(f)
	c.reset(f)
	f.Fuzz(func(t *testing.T, sku string) {
		rec := c.send(t, http.MethodGet, sku, "", nil, "", "")
		want := http.StatusNotFound
		if sku == "mug" {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Fatalf("GET /products/%q = %d %s, want %d", sku, rec.Code, rec.Body, want)
		}
	})
}
