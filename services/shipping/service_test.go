package main

import (
	"testing"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

// testService is the service on a fresh, migrated schema of the local
// PostgreSQL, with its real router and its event handlers.
type testService struct {
	*service
	*servicetest.Service
}

func newTestService(t *testing.T) testService {
	t.Helper()
	env := servicetest.New(t, serviceName, migrationsFS)
	s, err := newService(env.Pool, env.Logger, env.Registry)
	if err != nil {
		t.Fatal(err)
	}
	return testService{service: s, Service: env.Service(s.routes, s.handlers())}
}
