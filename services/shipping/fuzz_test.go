package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

// FuzzGetShipment reads GET /shipments/{order_id} with the id path-escaped,
// as a client sends it, through the real router on a schema of the local
// PostgreSQL without shipments: 404 for every id, UUID or not, never
// another status. The seed corpus is in testdata/fuzz/FuzzGetShipment;
// `go test -run '^$' -fuzz '^FuzzGetShipment$' ./services/shipping/`
// explores.
func FuzzGetShipment(f *testing.F) {
	env := servicetest.New(f, serviceName, migrationsFS)
	s, err := newService(env.Pool, env.Logger, env.Registry)
	if err != nil {
		f.Fatal(err)
	}
	h := env.Service(s.routes, s.handlers()).Handler
	f.Fuzz(func(t *testing.T, id string) {
		rec := servicetest.Serve(t, h, httptest.NewRequest(http.MethodGet, "/shipments/"+url.PathEscape(id), nil))
		if rec.Code != http.StatusNotFound {
			t.Fatalf("GET /shipments/%q = %d %s, want 404", id, rec.Code, rec.Body)
		}
		if id != "" {
			servicetest.RequireProblem(t, rec, http.StatusNotFound)
		}
	})
}
