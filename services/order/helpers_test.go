package main

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/database"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/testenv"
	"github.com/sagashop/sagashop/pkg/web"
)

// env is one test's order service: a fresh schema with the order tables,
// the outbox and the inbox, the service, and the real router.
type env struct {
	t        *testing.T
	ctx      context.Context
	pool     *pgxpool.Pool
	svc      *service
	registry *prometheus.Registry
	router   http.Handler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	pool, _ := testenv.Postgres(t)
	logger := telemetry.NewLogger(io.Discard, serviceName, slog.LevelDebug)
	migrations, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if err := database.Migrate(ctx, pool, migrations, logger); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	reg := prometheus.NewRegistry()
	svc, err := newService(pool, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := web.RouterConfig{Service: serviceName, Logger: logger, TracerProvider: noop.NewTracerProvider(), Registry: reg}
	r := web.NewRouter(cfg)
	svc.routes(r)
	return &env{t: t, ctx: ctx, pool: pool, svc: svc, registry: reg, router: web.Handler(r, cfg)}
}

// product puts a product into the catalog copy, as a ProductUpdated would.
func (e *env) product(sku string, priceCents int64) {
	e.t.Helper()
	_, err := e.pool.Exec(e.ctx,
		`INSERT INTO products (sku, name, price_cents, updated_at) VALUES ($1, $2, $3, now())
		 ON CONFLICT (sku) DO UPDATE SET price_cents = excluded.price_cents`, sku, "Product "+sku, priceCents)
	if err != nil {
		e.t.Fatalf("insert product %s: %v", sku, err)
	}
}

// count returns the number of rows of table (a fixed name from the test).
func (e *env) count(table string) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		e.t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// assertNothingStored checks that no order, item, key or event was written.
func (e *env) assertNothingStored() {
	e.t.Helper()
	for _, table := range []string{"orders", "order_items", "idempotency_keys", "outbox"} {
		if n := e.count(table); n != 0 {
			e.t.Errorf("%s has %d rows, want 0", table, n)
		}
	}
}

// outboxRow is one event written to the outbox.
type outboxRow struct {
	Topic    string
	Key      string
	Envelope events.Envelope
}

// outbox returns the outbox rows of event type typ, oldest first.
func (e *env) outbox(typ string) []outboxRow {
	e.t.Helper()
	rows, _ := e.pool.Query(e.ctx, `SELECT topic, key, envelope FROM outbox WHERE envelope->>'type' = $1 ORDER BY id`, typ)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outboxRow])
	if err != nil {
		e.t.Fatalf("read outbox: %v", err)
	}
	return out
}

// status returns the status and reason of order id.
func (e *env) status(id string) (Status, string) {
	e.t.Helper()
	var s Status
	var reason string
	if err := e.pool.QueryRow(e.ctx, `SELECT status, reason FROM orders WHERE id = $1`, id).Scan(&s, &reason); err != nil {
		e.t.Fatalf("read order %s: %v", id, err)
	}
	return s, reason
}

// counter returns the value of counter name with the given label values
// (name, value pairs), 0 if it has none yet.
func (e *env) counter(name string, labels ...string) float64 {
	e.t.Helper()
	families, err := e.registry.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// histogramCount returns the number of observations of histogram name.
func (e *env) histogramCount(name string) uint64 {
	e.t.Helper()
	families, err := e.registry.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	e.t.Fatalf("no metric %s", name)
	return 0
}
