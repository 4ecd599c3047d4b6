package main

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

// testDeadline is the saga deadline of the tests' order service: long
// enough that no order expires unless a test moves its deadline back.
const testDeadline = 5 * time.Minute

// env is one test's order service: a fresh schema with the order tables,
// the outbox and the inbox, the service, its real router and its event
// handlers.
type env struct {
	*servicetest.Service
	t   *testing.T
	ctx context.Context
	svc *service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	te := servicetest.New(t, serviceName, migrationsFS)
	svc, err := newService(te.Pool, te.Logger, te.Registry, noop.NewTracerProvider(), testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	return &env{Service: te.Service(svc.routes, svc.handlers()), t: t, ctx: context.Background(), svc: svc}
}

// product puts a product into the catalog copy, as a ProductUpdated would.
func (e *env) product(sku string, priceCents int64) {
	e.t.Helper()
	_, err := e.Pool.Exec(e.ctx,
		`INSERT INTO products (sku, name, price_cents, updated_at) VALUES ($1, $2, $3, now())
		 ON CONFLICT (sku) DO UPDATE SET price_cents = excluded.price_cents`, sku, "Product "+sku, priceCents)
	if err != nil {
		e.t.Fatalf("insert product %s: %v", sku, err)
	}
}

// count returns the number of rows of table (a fixed name from the test).
func (e *env) count(table string) int {
	e.t.Helper()
	return servicetest.Count(e.t, e.Pool, `SELECT count(*) FROM `+table)
}

// assertNothingStored checks that no order, item, key or event was written.
func (e *env) assertNothingStored(t testing.TB) {
	t.Helper()
	servicetest.RequireEmpty(t, e.Pool, "orders", "order_items", "idempotency_keys", "outbox")
}

// outbox returns the outbox rows of event type typ, oldest first.
func (e *env) outbox(typ string) []servicetest.OutboxEvent {
	e.t.Helper()
	var out []servicetest.OutboxEvent
	for _, r := range servicetest.Outbox(e.t, e.Pool) {
		if r.Envelope.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// status returns the status and reason of order id.
func (e *env) status(id string) (Status, string) {
	e.t.Helper()
	var s Status
	var reason string
	if err := e.Pool.QueryRow(e.ctx, `SELECT status, reason FROM orders WHERE id = $1`, id).Scan(&s, &reason); err != nil {
		e.t.Fatalf("read order %s: %v", id, err)
	}
	return s, reason
}

// histogramCount returns the number of observations of histogram name.
func (e *env) histogramCount(name string) uint64 {
	e.t.Helper()
	return servicetest.Series(e.t, e.Registry, name)[0].GetHistogram().GetSampleCount()
}
