package servicetest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// Service is a service under test: its Env, the router main serves with the
// service's routes, and the event handlers the consumer would run. A
// service's test type embeds it next to the service itself.
type Service struct {
	*Env
	Handler http.Handler // the real router with the service's routes

	handlers map[string]consumer.Handler
}

// Service returns the service with routes and handlers on e.
func (e *Env) Service(routes func(chi.Router), handlers map[string]consumer.Handler) *Service {
	e.t.Helper()
	return &Service{Env: e, Handler: e.Router(routes), handlers: handlers}
}

// Apply runs the handler of ev's type for ev in a transaction of its own,
// as Deliver does, and returns its error. It fails the test when the
// service has no handler for that type.
func (s *Service) Apply(t testing.TB, ev events.Envelope) error {
	t.Helper()
	return Deliver(t, s.Pool, Handler(t, s.handlers, ev.Type), ev)
}

// ErrRolledBack is the error of a handler wrapped by RollBack.
var ErrRolledBack = errors.New("servicetest: rolled back after the handler")

// RollBack returns a handler that runs h and then fails with ErrRolledBack
// (or h's own error), so that whatever h did is rolled back: Deliver runs
// none of its after-commit effects. For tests that an attempt that does not
// commit leaves no trace, in the database or in the metrics.
func RollBack(h consumer.Handler) consumer.Handler {
	return func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		if err := h(ctx, tx, e); err != nil {
			return err
		}
		return ErrRolledBack
	}
}

// Do sends a request with body (and a Content-Type, unless contentType is
// empty) to the service's router and returns the recorded response.
func (s *Service) Do(t testing.TB, method, path, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	return Request(t, s.Handler, method, path, body, "Content-Type", contentType)
}
