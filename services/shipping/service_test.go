package main

import (
	"net/http"
	"testing"

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

func newTestService(t *testing.T) testService {
	t.Helper()
	env := servicetest.New(t, serviceName, migrationsFS)
	s := newService(env.Pool, env.Logger, env.Registry)
	return testService{service: s, pool: env.Pool, registry: env.Registry, handler: env.Router(s.routes)}
}

// apply runs the handler for e inside one transaction, as the consumer does.
func (ts testService) apply(t *testing.T, e events.Envelope) error {
	t.Helper()
	return servicetest.Deliver(t, ts.pool, servicetest.Handler(t, ts.handlers(), e.Type), e)
}
