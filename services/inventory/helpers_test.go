package main

import (
	"context"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

// testService is the inventory service on a fresh, migrated schema of the
// local PostgreSQL, with its real router.
type testService struct {
	*service
	pool     *pgxpool.Pool
	registry *prometheus.Registry
	handler  http.Handler
}

func newTestService(t *testing.T) *testService {
	t.Helper()
	env := servicetest.New(t, serviceName, migrationFiles)
	svc, err := newService(env.Pool, env.Logger, env.Registry)
	if err != nil {
		t.Fatal(err)
	}
	return &testService{service: svc, pool: env.Pool, registry: env.Registry, handler: env.Router(svc.routes)}
}

// deliver runs the handler of e's type for e inside its own transaction,
// as the consumer does (without the inbox record).
func (ts *testService) deliver(t *testing.T, e events.Envelope) error {
	t.Helper()
	return servicetest.Deliver(t, ts.pool, servicetest.Handler(t, ts.handlers(), e.Type), e)
}

// stock creates a product with available units.
func (ts *testService) stock(t *testing.T, sku string, available int) {
	t.Helper()
	if _, _, err := ts.putProduct(context.Background(), Product{SKU: sku, Name: "Product " + sku, PriceCents: 100, Available: available}); err != nil {
		t.Fatalf("put product %s: %v", sku, err)
	}
}

// wantStock asserts a product's available and reserved units.
func (ts *testService) wantStock(t *testing.T, sku string, available, reserved int) {
	t.Helper()
	p, err := ts.product(context.Background(), sku)
	if err != nil {
		t.Fatalf("product %s: %v", sku, err)
	}
	if p.Available != available || p.Reserved != reserved {
		t.Fatalf("%s: available %d reserved %d, want %d and %d", sku, p.Available, p.Reserved, available, reserved)
	}
}
