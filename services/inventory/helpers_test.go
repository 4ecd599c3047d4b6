package main

import (
	"context"
	"encoding/json"
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
	"github.com/sagashop/sagashop/pkg/testenv"
	"github.com/sagashop/sagashop/pkg/web"
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
	ctx := context.Background()
	pool, _ := testenv.Postgres(t)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	migrations, err := fs.Sub(migrationFiles, "migrations")
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
	router := web.NewRouter(cfg)
	svc.routes(router)
	return &testService{service: svc, pool: pool, registry: reg, handler: web.Handler(router, cfg)}
}

// count returns the result of a SELECT count(*) query.
func (ts *testService) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := ts.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// outboxEvent is one row of the outbox, decoded.
type outboxEvent struct {
	Topic    string
	Key      string
	Envelope events.Envelope
}

// outboxEvents returns the events written to the outbox for key, oldest
// first.
func (ts *testService) outboxEvents(t *testing.T, key string) []outboxEvent {
	t.Helper()
	rows, err := ts.pool.Query(context.Background(), `SELECT topic, key, envelope FROM outbox WHERE key = $1 ORDER BY id`, key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (outboxEvent, error) {
		var e outboxEvent
		var body []byte
		if err := row.Scan(&e.Topic, &e.Key, &body); err != nil {
			return e, err
		}
		return e, json.Unmarshal(body, &e.Envelope)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deliver runs the handler of e's type for e inside its own transaction,
// as the consumer does (without the inbox record).
func (ts *testService) deliver(t *testing.T, e events.Envelope) error {
	t.Helper()
	h := ts.handlers()[e.Type]
	if h == nil {
		t.Fatalf("no handler for %s", e.Type)
	}
	ctx := context.Background()
	return pgx.BeginFunc(ctx, ts.pool, func(tx pgx.Tx) error { return h(ctx, tx, e) })
}

// mustEnvelope wraps p in an envelope from source.
func mustEnvelope(t *testing.T, source string, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New(source, p)
	if err != nil {
		t.Fatal(err)
	}
	return e
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

// counterValue returns the value of the counter called name with the given
// label values (all of them summed when labels is empty).
func (ts *testService) counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := ts.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
