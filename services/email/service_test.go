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
	dto "github.com/prometheus/client_model/go"
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

// newTestService starts the service with sender (nil: record only).
func newTestService(t *testing.T, sender Sender) testService {
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
	s := newService(pool, logger, sender, reg)
	cfg := web.RouterConfig{Service: serviceName, Logger: logger, TracerProvider: noop.NewTracerProvider(), Registry: reg}
	router := web.NewRouter(cfg)
	s.routes(router)
	return testService{service: s, pool: pool, registry: reg, handler: web.Handler(router, cfg)}
}

// apply runs the handler for e inside one transaction, as the consumer does.
func (ts testService) apply(t *testing.T, e events.Envelope) error {
	t.Helper()
	return ts.applyOn(t, ts.pool, e)
}

func (ts testService) applyOn(t *testing.T, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, e events.Envelope) error {
	t.Helper()
	h, ok := ts.handlers()[e.Type]
	if !ok {
		t.Fatalf("no handler for %s", e.Type)
	}
	ctx := context.Background()
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return h(ctx, tx, e) })
}

// emailRow is a row of the emails table.
type emailRow struct {
	OrderID string  `db:"order_id"`
	Kind    string  `db:"kind"`
	To      *string `db:"to_address"`
	Subject string  `db:"subject"`
	Body    string  `db:"body"`
	Sent    bool    `db:"sent"`
}

func (ts testService) emails(t *testing.T) []emailRow {
	t.Helper()
	rows, err := ts.pool.Query(context.Background(), `
		SELECT order_id::text, kind, to_address, subject, body, sent_at IS NOT NULL AS sent
		FROM emails ORDER BY created_at, kind`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[emailRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
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

// metric returns the value of the counter or gauge name with the given
// label values (name=value pairs), or fails.
func (ts testService) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := ts.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func newEvent(t *testing.T, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New("test", p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
