package servicetest_test

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"testing"
	"testing/fstest"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/web"
)

// migrations stands for a service's embedded files: one migration in
// migrations/.
func migrations() fstest.MapFS {
	return fstest.MapFS{
		"migrations/00010_init.sql": {Data: []byte("-- +goose Up\nCREATE TABLE things (name text PRIMARY KEY);\n")},
	}
}

func TestNewMigratesAFreshSchema(t *testing.T) {
	env := servicetest.New(t, "thing", migrations())
	for _, table := range []string{"things", "outbox", "processed_events"} {
		if n := servicetest.Count(t, env.Pool, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("%s has %d rows in a fresh schema, want 0", table, n)
		}
	}
	other := servicetest.New(t, "thing", migrations())
	if _, err := env.Pool.Exec(t.Context(), `INSERT INTO things VALUES ('mug')`); err != nil {
		t.Fatal(err)
	}
	if n := servicetest.Count(t, other.Pool, `SELECT count(*) FROM things`); n != 0 {
		t.Errorf("another test's schema sees %d things, want 0", n)
	}
}

func TestRouterServesRoutesAndSharedEndpoints(t *testing.T) {
	env := servicetest.New(t, "thing", migrations())
	h := env.Router(func(r chi.Router) {
		r.Put("/things/{name}", func(w http.ResponseWriter, r *http.Request) {
			web.Encode(w, http.StatusOK, map[string]string{
				"name":         chi.URLParam(r, "name"),
				"content_type": r.Header.Get("Content-Type"),
				"key":          r.Header.Get("Idempotency-Key"),
			})
		})
	})

	rec := servicetest.Request(t, h, http.MethodPut, "/things/mug", `{}`, "Content-Type", "application/json", "Idempotency-Key", "k-1")
	if rec.Code != http.StatusOK {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	want := map[string]string{"name": "mug", "content_type": "application/json", "key": "k-1"}
	if got := servicetest.DecodeJSON[map[string]string](t, rec); len(got) != 3 || got["name"] != want["name"] || got["content_type"] != want["content_type"] || got["key"] != want["key"] {
		t.Errorf("PUT = %v, want %v", got, want)
	}
	if rec.Body.Len() == 0 {
		t.Error("DecodeJSON consumed the body")
	}

	// A header with an empty value is not sent.
	rec = servicetest.Request(t, h, http.MethodPut, "/things/mug", `{}`, "Content-Type", "")
	if got := servicetest.DecodeJSON[map[string]string](t, rec); got["content_type"] != "" {
		t.Errorf("Content-Type %q sent, want none", got["content_type"])
	}

	p := servicetest.RequireProblem(t, servicetest.Request(t, h, http.MethodGet, "/nowhere", ""), http.StatusNotFound)
	if p.Detail == "" {
		t.Errorf("problem %+v has no detail", p)
	}
	servicetest.RequireProblem(t, servicetest.Request(t, h, http.MethodDelete, "/things/mug", ""), http.StatusMethodNotAllowed)

	// The router's own metrics are in the Env's registry.
	if v := servicetest.Metric(t, env.Registry, "http_requests_total", "route", "/things/{name}", "status", "200"); v != 2 {
		t.Errorf("http_requests_total{/things/{name},200} = %v, want 2", v)
	}
	if n := servicetest.Series(t, env.Registry, "http_request_duration_seconds", "method", http.MethodPut)[0].GetHistogram().GetSampleCount(); n != 2 {
		t.Errorf("PUT duration observed %d times, want 2", n)
	}
}

func TestDeliverCommitsUnlessTheHandlerFails(t *testing.T) {
	env := servicetest.New(t, "thing", migrations())
	handlers := map[string]consumer.Handler{
		events.TypeProductUpdated: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			p, err := events.Decode[events.ProductUpdated](e)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO things VALUES ($1)`, p.SKU); err != nil {
				return err
			}
			if err := outbox.Write(ctx, tx, events.TopicInventory, e); err != nil {
				return err
			}
			if p.PriceCents < 0 {
				return consumer.Permanent(errors.New("negative price"))
			}
			return nil
		},
	}
	h := servicetest.Handler(t, handlers, events.TypeProductUpdated)
	mug := servicetest.Event(t, "test", events.ProductUpdated{SKU: "MUG", Name: "Mug", PriceCents: 100})
	tea := servicetest.Event(t, "test", events.ProductUpdated{SKU: "TEA", Name: "Tea", PriceCents: 100})
	mugAgain := servicetest.Event(t, "test", events.ProductUpdated{SKU: "MUG", Name: "Mug", PriceCents: 90})
	for _, e := range []events.Envelope{mug, tea} {
		if err := servicetest.Deliver(t, env.Pool, h, e); err != nil {
			t.Fatal(err)
		}
	}
	bad := servicetest.Event(t, "test", events.ProductUpdated{SKU: "PEN", Name: "Pen", PriceCents: -1})
	if err := servicetest.Deliver(t, env.Pool, h, bad); !errors.Is(err, consumer.ErrPermanent) {
		t.Fatalf("Deliver = %v, want the handler's permanent error", err)
	}
	if n := servicetest.Count(t, env.Pool, `SELECT count(*) FROM things WHERE name = $1`, "PEN"); n != 0 {
		t.Errorf("a failed delivery stored %d things, want 0", n)
	}
	if _, err := env.Pool.Exec(t.Context(), `DELETE FROM things WHERE name = 'MUG'`); err != nil {
		t.Fatal(err)
	}
	if err := servicetest.Deliver(t, env.Pool, h, mugAgain); err != nil {
		t.Fatal(err)
	}

	all := servicetest.Outbox(t, env.Pool)
	if len(all) != 3 || all[0].Envelope.ID != mug.ID || all[1].Envelope.ID != tea.ID || all[2].Envelope.ID != mugAgain.ID {
		t.Fatalf("outbox = %+v, want MUG, TEA, MUG again", all)
	}
	if all[1].Topic != events.TopicInventory || all[1].Key != "TEA" || all[1].Envelope.Type != events.TypeProductUpdated {
		t.Errorf("outbox row = %+v", all[1])
	}
	mugs := servicetest.OutboxEvents(t, env.Pool, "MUG")
	if len(mugs) != 2 || mugs[0].Envelope.ID != mug.ID || mugs[1].Envelope.ID != mugAgain.ID {
		t.Errorf("outbox under MUG = %+v, want the two MUG events, oldest first", mugs)
	}
	if got, err := events.Decode[events.ProductUpdated](mugs[1].Envelope); err != nil || got.PriceCents != 90 {
		t.Errorf("decoded %+v (%v), want price 90", got, err)
	}
}

func TestRequireOneEvent(t *testing.T) {
	env := servicetest.New(t, "thing", migrations())
	write := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		return outbox.Write(ctx, tx, events.TopicInventory, e)
	}
	cause := servicetest.Event(t, "test", events.ProductUpdated{SKU: "CUP", Name: "Cup", PriceCents: 1})
	reaction := servicetest.Event(t, "thing", events.ProductUpdated{SKU: "CUP", Name: "Cup", PriceCents: 2}).CausedBy(cause)
	if err := servicetest.Deliver(t, env.Pool, write, reaction); err != nil {
		t.Fatal(err)
	}
	if got := servicetest.RequireOneEvent(t, env.Pool, "CUP", events.TopicInventory, events.TypeProductUpdated, "thing", cause); got.ID != reaction.ID {
		t.Errorf("RequireOneEvent = %+v, want %s", got, reaction.ID)
	}

	for range 2 {
		pen := servicetest.Event(t, "thing", events.ProductUpdated{SKU: "PEN", Name: "Pen", PriceCents: 2}).CausedBy(cause)
		if err := servicetest.Deliver(t, env.Pool, write, pen); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name                    string
		key, topic, typ, source string
		cause                   events.Envelope
	}{
		{"no event under key", "MUG", events.TopicInventory, events.TypeProductUpdated, "thing", cause},
		{"two events under key", "PEN", events.TopicInventory, events.TypeProductUpdated, "thing", cause},
		{"other topic", "CUP", events.TopicOrders, events.TypeProductUpdated, "thing", cause},
		{"other type", "CUP", events.TopicInventory, events.TypeOrderCreated, "thing", cause},
		{"other source", "CUP", events.TopicInventory, events.TypeProductUpdated, "order", cause},
		{"other cause", "CUP", events.TopicInventory, events.TypeProductUpdated, "thing", reaction},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !fails(t, func(tb testing.TB) {
				servicetest.RequireOneEvent(tb, env.Pool, tt.key, tt.topic, tt.typ, tt.source, tt.cause)
			}) {
				t.Error("RequireOneEvent did not fail the test")
			}
		})
	}
}

func TestMetricSumsMatchingSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	reservations := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reservations_total", Help: "h"}, []string{"outcome", "reason"})
	pending := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pending", Help: "h"})
	reg.MustRegister(reservations, pending)
	reservations.WithLabelValues("reserved", "").Add(3)
	reservations.WithLabelValues("rejected", "none").Add(2)
	reservations.WithLabelValues("rejected", "some").Add(1)
	pending.Set(7)

	for _, tt := range []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"all series", "reservations_total", nil, 6},
		{"one label", "reservations_total", []string{"outcome", "rejected"}, 3},
		{"every label", "reservations_total", []string{"outcome", "rejected", "reason", "some"}, 1},
		{"empty label value", "reservations_total", []string{"outcome", "reserved", "reason", ""}, 3},
		{"gauge", "pending", nil, 7},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := servicetest.Metric(t, reg, tt.metric, tt.labels...); got != tt.want {
				t.Errorf("Metric(%s, %q) = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		name   string
		metric string
		labels []string
	}{
		{"misspelt metric", "reservation_total", nil},
		{"no such label value", "reservations_total", []string{"outcome", "lost"}},
		{"no such label", "pending", []string{"outcome", "reserved"}},
		{"odd labels", "pending", []string{"outcome"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !fails(t, func(tb testing.TB) { servicetest.Metric(tb, reg, tt.metric, tt.labels...) }) {
				t.Errorf("Metric(%s, %q) did not fail the test", tt.metric, tt.labels)
			}
		})
	}
}

func TestHandlerFailsForAnUnknownType(t *testing.T) {
	handlers := map[string]consumer.Handler{events.TypeProductUpdated: nil}
	for _, typ := range []string{events.TypeOrderCreated, events.TypeProductUpdated} {
		if !fails(t, func(tb testing.TB) { servicetest.Handler(tb, handlers, typ) }) {
			t.Errorf("Handler(%s) did not fail the test", typ)
		}
	}
}

// fails reports whether f fails the test it is given.
func fails(t *testing.T, f func(testing.TB)) bool {
	t.Helper()
	tb := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(tb)
	}()
	<-done
	return tb.failed
}

// fatalRecorder is a testing.TB whose Fatal and Fatalf record the failure
// and end the calling goroutine instead of failing the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatal(...any) { r.failed = true; runtime.Goexit() }

func (r *fatalRecorder) Fatalf(string, ...any) { r.failed = true; runtime.Goexit() }
