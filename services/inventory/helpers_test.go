package main

import (
	"context"
	"testing"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

// testService is the inventory service on a fresh, migrated schema of the
// local PostgreSQL, with its real router and its event handlers.
type testService struct {
	*service
	*servicetest.Service
}

func newTestService(t *testing.T) *testService {
	t.Helper()
	env := servicetest.New(t, serviceName, migrationFiles)
	svc, err := newService(env.Pool, env.Logger, env.Registry)
	if err != nil {
		t.Fatal(err)
	}
	return &testService{service: svc, Service: env.Service(svc.routes, svc.handlers())}
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
