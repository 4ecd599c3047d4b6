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
	"github.com/sagashop/sagashop/pkg/testenv"
	"github.com/sagashop/sagashop/pkg/web"
)

// testService is the service on a fresh, migrated schema of the local
// PostgreSQL, with its router.
type testService struct {
	*service
	pool     *pgxpool.Pool
	registry *prometheus.Registry
	handler  http.Handler
}

func newTestService(t *testing.T) testService {
	t.Helper()
	ctx := context.Background()
	pool, _ := testenv.Postgres(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	migrations, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if err := database.Migrate(ctx, pool, migrations, logger); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := newService(pool, logger, reg)
	cfg := web.RouterConfig{Service: serviceName, Logger: logger, TracerProvider: noop.NewTracerProvider(), Registry: reg}
	router := web.NewRouter(cfg)
	s.routes(router)
	return testService{service: s, pool: pool, registry: reg, handler: web.Handler(router, cfg)}
}

// apply runs handler h for e inside one transaction, as the consumer does.
func (ts testService) apply(t *testing.T, e events.Envelope) error {
	t.Helper()
	h, ok := ts.handlers()[e.Type]
	if !ok {
		t.Fatalf("no handler for %s", e.Type)
	}
	ctx := context.Background()
	return pgx.BeginFunc(ctx, ts.pool, func(tx pgx.Tx) error { return h(ctx, tx, e) })
}

// outboxRow is one event written to the outbox.
type outboxRow struct {
	Topic       string `db:"topic"`
	Type        string `db:"type"`
	CausationID string `db:"causation_id"`
	Data        string `db:"data"`
}

func (ts testService) outbox(t *testing.T) []outboxRow {
	t.Helper()
	rows, err := ts.pool.Query(context.Background(), `
		SELECT topic, envelope->>'type' AS type, coalesce(envelope->>'causation_id', '') AS causation_id,
		       (envelope->'data')::text AS data
		FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[outboxRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newEvent(t *testing.T, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New("test", p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
