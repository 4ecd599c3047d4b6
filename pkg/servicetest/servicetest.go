// Package servicetest is for testing one Sagashop service against the real
// PostgreSQL of the local stack: it gives a test a fresh schema with the
// shared tables and the service's migrations, the service's real router, and
// helpers to send it HTTP requests, run its event handlers the way the
// consumer does, and read back what it stored, wrote to its outbox and
// counted in its metrics. It is imported only from _test.go files.
//
// Every helper takes the test first, marks itself as a helper and fails the
// test (never skips it) when something it needs does not work; what it
// creates is removed when the test ends.
package servicetest

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/platform"
	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/testenv"
	"github.com/sagashop/sagashop/pkg/web"
)

// Env is what a test builds its service from, as main does.
type Env struct {
	Pool     *pgxpool.Pool        // a fresh schema, migrated, dropped when the test ends
	Registry *prometheus.Registry // fresh, for the service's metrics and the router's
	Logger   *slog.Logger         // the services' logger, at debug level, writing nowhere

	service string
	t       testing.TB
}

// New returns an Env for service whose schema has the shared tables (outbox,
// inbox) and the migrations in the migrations/ folder of embedded, the
// service's //go:embed migrations/*.sql.
func New(t testing.TB, service string, embedded fs.FS) *Env {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	logger := telemetry.NewLogger(io.Discard, service, slog.LevelDebug)
	if err := platform.Migrate(t.Context(), pool, embedded, logger); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return &Env{Pool: pool, Registry: prometheus.NewRegistry(), Logger: logger, service: service, t: t}
}

// Router returns the HTTP handler main serves: the shared router (middleware,
// /livez, /readyz, /metrics) with routes added, instrumented with a no-op
// tracer.
func (e *Env) Router(routes func(chi.Router)) http.Handler {
	cfg := web.RouterConfig{Service: e.service, Logger: e.Logger, TracerProvider: noop.NewTracerProvider(), Registry: e.Registry}
	r, err := web.NewRouter(cfg)
	if err != nil {
		e.t.Fatalf("new router: %v", err)
	}
	routes(r)
	return web.Handler(r, cfg)
}

// Querier is what the read helpers query: a *pgxpool.Pool, a *pgxpool.Conn
// or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Count returns the single number that query (a SELECT count(*) or sum)
// returns.
func Count(t testing.TB, q Querier, query string, args ...any) int {
	t.Helper()
	var n int
	if err := q.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// OutboxEvent is one row of the outbox, its envelope decoded.
type OutboxEvent struct {
	Topic    string
	Key      string
	Envelope events.Envelope
}

// Outbox returns every event in the outbox, oldest first.
func Outbox(t testing.TB, q Querier) []OutboxEvent {
	t.Helper()
	return readOutbox(t, q, "")
}

// OutboxEvents returns the events in the outbox under key (an order id, a
// SKU), oldest first.
func OutboxEvents(t testing.TB, q Querier, key string) []OutboxEvent {
	t.Helper()
	return readOutbox(t, q, "WHERE key = $1", key)
}

// Types returns the event types of outbox events, in their order.
func Types(es []OutboxEvent) []string {
	types := make([]string, 0, len(es))
	for _, e := range es {
		types = append(types, e.Envelope.Type)
	}
	return types
}

// RequireOneEvent fails the test unless the outbox holds exactly one event
// under key, of type typ on topic, written by source in reaction to cause
// (cause's id is its causation id, cause's correlation id its own), and
// returns that event's envelope.
func RequireOneEvent(t testing.TB, q Querier, key, topic, typ, source string, cause events.Envelope) events.Envelope {
	t.Helper()
	got := OutboxEvents(t, q, key)
	if len(got) != 1 {
		t.Fatalf("%d outbox events for %s, want 1: %+v", len(got), key, got)
	}
	e := got[0]
	if e.Topic != topic || e.Envelope.Type != typ {
		t.Fatalf("outbox event %s on %s, want %s on %s", e.Envelope.Type, e.Topic, typ, topic)
	}
	if e.Envelope.CausationID != cause.ID || e.Envelope.CorrelationID != cause.CorrelationID || e.Envelope.Source != source {
		t.Fatalf("envelope %+v not caused by %s", e.Envelope, cause.ID)
	}
	return e.Envelope
}

func readOutbox(t testing.TB, q Querier, where string, args ...any) []OutboxEvent {
	t.Helper()
	rows, err := q.Query(t.Context(), `SELECT topic, key, envelope FROM outbox `+where+` ORDER BY id`, args...)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (OutboxEvent, error) {
		var e OutboxEvent
		var body []byte
		if err := row.Scan(&e.Topic, &e.Key, &body); err != nil {
			return e, err
		}
		return e, json.Unmarshal(body, &e.Envelope)
	})
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

// Event wraps p in a new envelope from source.
func Event(t testing.TB, source string, p events.Payload) events.Envelope {
	t.Helper()
	e, err := events.New(source, p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Handler returns the handler for events of type typ, failing the test when
// handlers has none.
func Handler(t testing.TB, handlers map[string]consumer.Handler, typ string) consumer.Handler {
	t.Helper()
	h, ok := handlers[typ]
	if !ok || h == nil {
		t.Fatalf("no handler for %s", typ)
	}
	return h
}

// Deliver runs h for e in a transaction of its own on db, committed unless h
// returns an error, and then, only if it committed, the effects h registered
// with consumer.AfterCommit: as the consumer does, without the inbox record,
// so a second delivery of e reaches h again. It returns h's error and may be
// called from any goroutine.
func Deliver(t testing.TB, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, h consumer.Handler, e events.Envelope) error {
	t.Helper()
	ctx, committed := consumer.CollectAfterCommit(t.Context())
	if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return h(ctx, tx, e) }); err != nil {
		return err
	}
	committed()
	return nil
}

// Request sends a request with body to h and returns the recorded response.
// header holds name, value pairs; a pair with an empty value is not sent, so
// an optional Content-Type can be passed as it is.
func Request(t testing.TB, h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	if len(header)%2 != 0 {
		t.Fatalf("header %q: want name, value pairs", header)
	}
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i < len(header); i += 2 {
		if header[i+1] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	return Serve(t, h, req)
}

// Serve sends req, built by the test, to h and returns the recorded response.
func Serve(t testing.TB, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// DecodeJSON returns the response body decoded as a T. The body stays
// readable.
func DecodeJSON[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode response %q: %v", rec.Body, err)
	}
	return v
}

// RequireProblem fails the test unless the response has status and an
// application/problem+json body saying the same status, and returns the
// problem. The body stays readable.
func RequireProblem(t testing.TB, rec *httptest.ResponseRecorder, status int) web.Problem {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	p := DecodeJSON[web.Problem](t, rec)
	if p.Status != status {
		t.Fatalf("problem status %d, want %d", p.Status, status)
	}
	return p
}

// Series returns the series of the metric called name in g whose labels
// include every name, value pair of labels. It fails the test when there
// is none, so that a misspelt metric or label is not read as zero.
func Series(t testing.TB, g prometheus.Gatherer, name string, labels ...string) []*dto.Metric {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("labels %q: want name, value pairs", labels)
	}
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var out []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				out = append(out, m)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no metric %s%q", name, labels)
	}
	return out
}

// Metric returns the value of the counter or gauge called name, summed over
// its series whose labels include the name, value pairs of labels (all of
// them when labels is empty). It fails the test when no series matches.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	for _, m := range Series(t, g, name, labels...) {
		if c := m.GetCounter(); c != nil {
			sum += c.GetValue()
			continue
		}
		sum += m.GetGauge().GetValue()
	}
	return sum
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
