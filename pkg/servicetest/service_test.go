package servicetest_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

func TestServiceAppliesAndRollBackLeavesNoTrace(t *testing.T) {
	env := servicetest.New(t, "thing", migrations())
	var counted int
	store := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		p, err := events.Decode[events.ProductUpdated](e)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO things VALUES ($1)`, p.SKU); err != nil {
			return err
		}
		consumer.AfterCommit(ctx, func() { counted++ })
		return nil
	}
	svc := env.Service(func(r chi.Router) {
		r.Get("/things", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	}, map[string]consumer.Handler{events.TypeProductUpdated: store})

	if rec := servicetest.Request(t, svc.Handler, http.MethodGet, "/things", ""); rec.Code != http.StatusNoContent {
		t.Errorf("GET /things = %d, want the route's 204", rec.Code)
	}

	mug := servicetest.Event(t, "test", events.ProductUpdated{SKU: "MUG", Name: "Mug", PriceCents: 100})
	if err := servicetest.Deliver(t, svc.Pool, servicetest.RollBack(store), mug); !errors.Is(err, servicetest.ErrRolledBack) {
		t.Fatalf("Deliver(RollBack) = %v, want ErrRolledBack", err)
	}
	if n := servicetest.Count(t, svc.Pool, `SELECT count(*) FROM things`); n != 0 || counted != 0 {
		t.Errorf("rolled back: %d things stored, %d effects run, want none", n, counted)
	}
	if err := svc.Apply(t, mug); err != nil {
		t.Fatal(err)
	}
	if n := servicetest.Count(t, svc.Pool, `SELECT count(*) FROM things`); n != 1 || counted != 1 {
		t.Errorf("applied: %d things stored, %d effects run, want 1 and 1", n, counted)
	}

	failing := func(context.Context, pgx.Tx, events.Envelope) error { return consumer.Permanent(errors.New("no")) }
	if err := servicetest.Deliver(t, svc.Pool, servicetest.RollBack(failing), mug); !errors.Is(err, consumer.ErrPermanent) {
		t.Errorf("RollBack of a failing handler = %v, want the handler's own error", err)
	}
	if !fails(t, func(tb testing.TB) {
		_ = svc.Apply(tb, servicetest.Event(t, "test", events.OrderShipped{OrderID: "o1"}))
	}) {
		t.Error("Apply of a type the service does not handle did not fail the test")
	}
}
