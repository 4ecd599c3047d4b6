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

// testService is the payment service on a fresh, migrated schema of the
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

// deliver runs the handler for events of type typ for e inside its own
// transaction, as the consumer does (without the inbox record).
func (ts *testService) deliver(t *testing.T, typ string, e events.Envelope) error {
	t.Helper()
	return servicetest.Deliver(t, ts.pool, servicetest.Handler(t, ts.handlers(), typ), e)
}

// fund opens an account with a deposit.
func (ts *testService) fund(t *testing.T, customerID string, amount int64) {
	t.Helper()
	if _, err := ts.deposit(context.Background(), customerID, amount); err != nil {
		t.Fatalf("deposit: %v", err)
	}
}

func (ts *testService) balance(t *testing.T, customerID string) int64 {
	t.Helper()
	acc, err := ts.account(context.Background(), customerID)
	if err != nil {
		t.Fatalf("account %s: %v", customerID, err)
	}
	return acc.BalanceCents
}
