package main

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

// testService is the service on a fresh, migrated schema of the local
// PostgreSQL, with its real router and its event handlers.
type testService struct {
	*service
	*servicetest.Service
}

// newTestService starts the service with sender (nil: record only).
func newTestService(t *testing.T, sender Sender) testService {
	t.Helper()
	env := servicetest.New(t, serviceName, migrationsFS)
	s, err := newService(env.Pool, env.Logger, sender, env.Registry)
	if err != nil {
		t.Fatal(err)
	}
	return testService{service: s, Service: env.Service(s.routes, s.handlers())}
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
