package main

import (
	"context"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
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
	env := servicetest.New(t, serviceName, migrationsFS)
	s := newService(env.Pool, env.Logger, sender, env.Registry)
	return testService{service: s, pool: env.Pool, registry: env.Registry, handler: env.Router(s.routes)}
}

// apply runs the handler for e inside one transaction, as the consumer does.
func (ts testService) apply(t *testing.T, e events.Envelope) error {
	t.Helper()
	return servicetest.Deliver(t, ts.pool, servicetest.Handler(t, ts.handlers(), e.Type), e)
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
