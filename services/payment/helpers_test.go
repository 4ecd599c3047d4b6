package main

import (
	"context"
	"testing"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

// testService is the payment service on a fresh, migrated schema of the
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

// mustApply delivers e and fails the test if its handler fails.
func (ts *testService) mustApply(t *testing.T, e events.Envelope) {
	t.Helper()
	if err := ts.Apply(t, e); err != nil {
		t.Fatalf("%s: %v", e.Type, err)
	}
}
