package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/testenv"
)

func (e *env) shipmentCancelled(id string) events.Envelope {
	return e.event("shipping", events.ShipmentCancelled{OrderID: id, Reason: events.ReasonTimedOut})
}

// overdue moves the deadline of order id into the past, as if
// SAGA_DEADLINE had passed since it was placed.
func (e *env) overdue(id string) {
	e.t.Helper()
	tag, err := e.Pool.Exec(e.ctx, `UPDATE orders SET deadline = now() - interval '1 second' WHERE id = $1`, id)
	if err != nil || tag.RowsAffected() != 1 {
		e.t.Fatalf("move the deadline of %s back: %v (%d rows)", id, err, tag.RowsAffected())
	}
}

// sweep runs one sweep and returns how many orders it expired.
func (e *env) sweep() int {
	e.t.Helper()
	n, err := e.svc.sweep(e.ctx)
	if err != nil {
		e.t.Fatalf("sweep: %v", err)
	}
	return n
}

// expirations returns the OrderExpired events in the outbox, by order id.
func (e *env) expirations() map[string][]events.OrderExpired {
	e.t.Helper()
	out := map[string][]events.OrderExpired{}
	for _, r := range e.outbox(events.TypeOrderExpired) {
		x, err := events.Decode[events.OrderExpired](r.Envelope)
		if err != nil {
			e.t.Fatal(err)
		}
		if r.Topic != events.TopicOrders || r.Key != x.OrderID || r.Envelope.Source != "order" || r.Envelope.CorrelationID != x.OrderID {
			e.t.Errorf("OrderExpired outbox row = %+v", r)
		}
		out[x.OrderID] = append(out[x.OrderID], x)
	}
	return out
}

func mustUUID(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) order(id string) Order {
	e.t.Helper()
	o, err := e.svc.getOrder(e.ctx, mustUUID(e.t, id))
	if err != nil {
		e.t.Fatal(err)
	}
	return o
}

func TestDeadlineSetOnCreate(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	id := e.placed()
	var created, deadline time.Time
	var expired *time.Time
	if err := e.Pool.QueryRow(e.ctx, `SELECT created_at, deadline, expired_at FROM orders WHERE id = $1`, id).Scan(&created, &deadline, &expired); err != nil {
		t.Fatal(err)
	}
	if deadline.Sub(created) != testDeadline || expired != nil {
		t.Errorf("deadline is created_at + %v (expired_at %v), want + %v and not expired", deadline.Sub(created), expired, testDeadline)
	}

	// GET: the deadline, not stuck before it.
	get := func() createdBody {
		t.Helper()
		rec := e.do(http.MethodGet, "/orders/"+id, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET = %d %s", rec.Code, rec.Body)
		}
		b, _ := decodeBody(t, rec)
		return b
	}
	if b := get(); sinceCreated(t, b) != testDeadline || b.Stuck || b.StuckReason != "" || b.ExpiredAt != "" {
		t.Errorf("GET before the deadline = %+v", b)
	}

	// Past the deadline: stuck, first before the sweeper has seen it, then
	// while shipping has not answered, and no longer once it has.
	e.overdue(id)
	if b := get(); !b.Stuck || b.StuckReason != "deadline passed, not yet expired by the sweeper" || b.Status != "PENDING" {
		t.Errorf("GET past the deadline = %+v", b)
	}
	if n := e.sweep(); n != 1 {
		t.Fatalf("sweep expired %d orders, want 1", n)
	}
	b := get()
	if !b.Stuck || b.StuckReason != "deadline passed, waiting for shipping's answer" || b.Status != "PENDING" || b.ExpiredAt == "" {
		t.Errorf("GET once expired = %+v", b)
	}
	e.mustHandle(e.shipmentCancelled(id))
	if b := get(); b.Stuck || b.StuckReason != "" || b.Status != "CANCELLED" || b.Reason != events.ReasonTimedOut {
		t.Errorf("GET once cancelled = %+v", b)
	}
}

func TestSweepExpiresOverdueOpenOrdersOnce(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	pending, paid, reserved := e.placed(), e.placed(), e.placed()
	shipped, cancelled, notDue := e.placed(), e.placed(), e.placed()
	e.mustHandle(e.paid(paid))
	e.mustHandle(e.paid(reserved))
	e.mustHandle(e.reserved(reserved))
	e.mustHandle(e.shipped(shipped))
	e.mustHandle(e.paymentFailed(cancelled))
	for _, id := range []string{pending, paid, reserved, shipped, cancelled} {
		e.overdue(id)
	}

	if n := e.sweep(); n != 3 {
		t.Fatalf("sweep expired %d orders, want 3 (the pending, paid and reserved ones)", n)
	}
	got := e.expirations()
	if len(got) != 3 {
		t.Errorf("OrderExpired for %d orders, want 3: %v", len(got), got)
	}
	for id, want := range map[string]Status{pending: StatusPending, paid: StatusPaid, reserved: StatusReserved} {
		o := e.order(id)
		x := got[id]
		if len(x) != 1 || x[0] != (events.OrderExpired{OrderID: id, CustomerID: "c-1", Deadline: x[0].Deadline}) || !x[0].Deadline.Equal(o.Deadline) {
			t.Errorf("order %s: OrderExpired %+v, deadline %v", id, x, o.Deadline)
		}
		// The order keeps its status until shipping answers.
		if o.Status != want || o.ExpiredAt == nil {
			t.Errorf("order %s is %s, expired_at %v; want %s and expired", id, o.Status, o.ExpiredAt, want)
		}
	}
	for _, id := range []string{shipped, cancelled, notDue} {
		if o := e.order(id); o.ExpiredAt != nil || len(got[id]) != 0 {
			t.Errorf("order %s (%s) expired", id, o.Status)
		}
	}
	if got := servicetest.Metric(t, e.Registry, "orders_expired_total"); got != 3 {
		t.Errorf("orders_expired_total = %v, want 3", got)
	}

	// Once: the next sweeps find nothing, though the orders are still open
	// and past their deadline.
	if n := e.sweep(); n != 0 {
		t.Errorf("second sweep expired %d orders", n)
	}
	if n := len(e.outbox(events.TypeOrderExpired)); n != 3 {
		t.Errorf("%d OrderExpired after the second sweep, want 3", n)
	}
	if got := servicetest.Metric(t, e.Registry, "orders_expired_total"); got != 3 {
		t.Errorf("orders_expired_total = %v after the second sweep, want 3", got)
	}
}

// Two replicas sweep the same table at the same time: every overdue order
// is expired by exactly one of them, more orders than one sweep takes.
func TestConcurrentSweepersExpireEachOrderOnce(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	const orders = 2*sweepBatch + 37
	ids := make([]string, orders)
	for i := range ids {
		ids[i] = e.placed()
	}
	if _, err := e.Pool.Exec(e.ctx, `UPDATE orders SET deadline = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	// Another replica's service on the same database, with metrics of its
	// own.
	other, err := newService(e.Pool, e.Logger, prometheus.NewRegistry(), noop.NewTracerProvider(), testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, s := range []*service{e.svc, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				n, err := s.sweep(e.ctx)
				if err != nil {
					t.Errorf("sweeper %d: %v", i, err)
					return
				}
				counts[i] += n
				if n == 0 {
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("the sweepers expired %v orders", counts)

	if counts[0]+counts[1] != orders {
		t.Errorf("the sweepers expired %d + %d orders, want %d in all", counts[0], counts[1], orders)
	}
	got := e.expirations()
	for _, id := range ids {
		if len(got[id]) != 1 {
			t.Errorf("order %s: %d OrderExpired, want 1", id, len(got[id]))
		}
	}
	if n := servicetest.Count(t, e.Pool, `SELECT count(*) FROM orders WHERE expired_at IS NULL`); n != 0 {
		t.Errorf("%d orders not expired", n)
	}
}

// An order an event handler holds is skipped, not waited for, and not
// expired at all when the handler ends it.
func TestSweepSkipsAnOrderBeingDecided(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	held, shipping := e.placed(), e.placed()
	e.overdue(held)
	e.overdue(shipping)

	tx, err := e.Pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(e.ctx) }()
	for _, id := range []string{held, shipping} {
		if _, err := lockOrder(e.ctx, tx, mustUUID(t, id)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	n, err := e.svc.sweep(ctx)
	if err != nil || n != 0 {
		t.Fatalf("sweep while both orders are held = %d, %v; want 0 at once", n, err)
	}
	// The handler holding one of them ships it.
	if _, err := updateStatus(e.ctx, tx, mustUUID(t, shipping), StatusShipped, ""); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.sweep(); n != 1 {
		t.Fatalf("sweep after the handler = %d, want 1", n)
	}
	got := e.expirations()
	if len(got[held]) != 1 || len(got[shipping]) != 0 {
		t.Errorf("OrderExpired: %v; want one for %s only", got, held)
	}
}

// The sweeper as main runs it: it expires an overdue order within a few
// intervals and returns nil when its context ends.
func TestSweeperLoop(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	id := e.placed()
	e.overdue(id)
	// A replica with a deadline of 2s sweeps every second.
	fast, err := newService(e.Pool, e.Logger, prometheus.NewRegistry(), noop.NewTracerProvider(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- fast.sweeper(ctx) }()
	testenv.WaitFor(t, 3*sweepInterval(fast.deadline), "the sweeper expires the order", func() bool {
		return len(e.expirations()[id]) == 1
	})
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sweeper = %v, want nil when its context ends", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the sweeper still runs 5s after its context ended")
	}
}

func TestShipmentCancelledCancelsTheOrder(t *testing.T) {
	tests := []struct {
		name   string
		before func(e *env, id string) // brings the order to its starting status
		from   Status
	}{
		{"pending", func(*env, string) {}, StatusPending},
		{"paid", func(e *env, id string) { e.mustHandle(e.paid(id)) }, StatusPaid},
		{"reserved", func(e *env, id string) { e.mustHandle(e.paid(id)); e.mustHandle(e.reserved(id)) }, StatusReserved},
		{"reserved before paid", func(e *env, id string) { e.mustHandle(e.reserved(id)) }, StatusReserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.product("mug", 1250)
			id := e.placed()
			tt.before(e, id)
			e.assertStatus(id, tt.from, "")
			e.overdue(id)
			if n := e.sweep(); n != 1 {
				t.Fatalf("sweep expired %d orders, want 1", n)
			}
			e.assertStatus(id, tt.from, "")

			answer := e.shipmentCancelled(id)
			e.mustHandle(answer)
			e.assertStatus(id, StatusCancelled, events.ReasonTimedOut)
			rows := e.outbox(events.TypeOrderCancelled)
			if len(rows) != 1 {
				t.Fatalf("%d OrderCancelled in the outbox, want 1", len(rows))
			}
			if r := rows[0]; r.Topic != events.TopicOrders || r.Key != id || r.Envelope.CausationID != answer.ID || r.Envelope.CorrelationID != id {
				t.Errorf("outbox row = %+v", r)
			}
			if c := e.cancellations(id); c[0] != (events.OrderCancelled{OrderID: id, CustomerID: "c-1", Reason: events.ReasonTimedOut}) {
				t.Errorf("OrderCancelled = %+v", c[0])
			}

			// Late events: the same answer again, then the steps the order
			// never took, all change nothing.
			e.mustHandle(e.shipmentCancelled(id))
			e.mustHandle(e.paid(id))
			e.mustHandle(e.reserved(id))
			e.mustHandle(e.shipped(id))
			e.mustHandle(e.refunded(id))
			e.mustHandle(e.paymentFailed(id))
			e.assertStatus(id, StatusCancelled, events.ReasonTimedOut)
			if n := len(e.cancellations(id)); n != 1 {
				t.Errorf("%d OrderCancelled, want 1", n)
			}
			if n := e.sweep(); n != 0 {
				t.Errorf("a cancelled order expired again (%d)", n)
			}
			if got := servicetest.Metric(t, e.Registry, "saga_orders_total", "outcome", "cancelled", "reason", events.ReasonTimedOut); got != 1 {
				t.Errorf("saga_orders_total{cancelled,timed_out} = %v, want 1", got)
			}
			if got := servicetest.Metric(t, e.Registry, "saga_orders_total", "outcome", "shipped", "reason", ""); got != 0 {
				t.Errorf("saga_orders_total{shipped} = %v, want 0", got)
			}
			if got := e.histogramCount("saga_duration_seconds"); got != 1 {
				t.Errorf("saga_duration_seconds count = %d, want 1", got)
			}
		})
	}
}

// Shipping shipped before the deadline's question reached it: it sends no
// ShipmentCancelled, and the expired order ends SHIPPED. A
// ShipmentCancelled for a shipped order (which shipping never sends) is
// ignored.
func TestExpiredOrderThatShippedEndsShipped(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	id := e.placed()
	e.mustHandle(e.paid(id))
	e.mustHandle(e.reserved(id))
	e.overdue(id)
	if n := e.sweep(); n != 1 {
		t.Fatalf("sweep expired %d orders, want 1", n)
	}
	e.mustHandle(e.shipped(id))
	e.assertStatus(id, StatusShipped, "")
	e.mustHandle(e.shipmentCancelled(id))
	e.assertStatus(id, StatusShipped, "")
	if n := len(e.cancellations(id)); n != 0 {
		t.Errorf("%d OrderCancelled for a shipped order", n)
	}
}

// A ShipmentCancelled for an order this service never created can never
// apply: it is dead-lettered, as every such event is.
func TestShipmentCancelledForAnUnknownOrder(t *testing.T) {
	e := newEnv(t)
	err := e.handle(e.shipmentCancelled(uuid.NewString()))
	if !errors.Is(err, consumer.ErrPermanent) {
		t.Fatalf("handle = %v, want a permanent error", err)
	}
}

// The sweep's transaction holds the expiry and its event together: a sweep
// that does not commit expires nothing and emits nothing.
func TestSweepRolledBackLeavesNoTrace(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	id := e.placed()
	e.overdue(id)
	err := pgx.BeginFunc(e.ctx, e.Pool, func(tx pgx.Tx) error {
		due, err := expireDue(e.ctx, tx, sweepBatch)
		if err != nil {
			return err
		}
		if len(due) != 1 || due[0].ID.String() != id {
			t.Errorf("expireDue = %+v", due)
		}
		return servicetest.ErrRolledBack
	})
	if !errors.Is(err, servicetest.ErrRolledBack) {
		t.Fatal(err)
	}
	if o := e.order(id); o.ExpiredAt != nil {
		t.Errorf("rolled-back sweep left expired_at %v", o.ExpiredAt)
	}
	if n := e.sweep(); n != 1 {
		t.Errorf("sweep after the rolled-back one = %d, want 1", n)
	}
}

// The OrderExpired of an order continues the trace its POST /orders
// started, under a span of the sweeper's, as every event of the saga does.
func TestOrderExpiredJoinsTheOrdersTrace(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	svc, err := newService(e.Pool, e.Logger, prometheus.NewRegistry(), tp, testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	ctx, request := tp.Tracer("test").Start(e.ctx, "POST /orders")
	traced, _, err := svc.placeOrder(ctx, "", validOrder())
	request.End()
	if err != nil {
		t.Fatal(err)
	}
	untraced, _, err := svc.placeOrder(e.ctx, "", validOrder())
	if err != nil {
		t.Fatal(err)
	}
	e.overdue(traced.ID.String())
	e.overdue(untraced.ID.String())
	if n, err := svc.sweep(e.ctx); err != nil || n != 2 {
		t.Fatalf("sweep = %d, %v; want 2", n, err)
	}

	var expire sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.Name() == "expire order" && s.Parent().SpanID() == request.SpanContext().SpanID() {
			expire = s
		}
	}
	if expire == nil || expire.SpanContext().TraceID() != request.SpanContext().TraceID() {
		t.Fatalf("no expire order span under the order's request span among %d spans", len(spans.Ended()))
	}
	for _, r := range e.outbox(events.TypeOrderExpired) {
		tp := r.Envelope.TraceParent
		switch r.Key {
		case traced.ID.String():
			want := "00-" + expire.SpanContext().TraceID().String() + "-" + expire.SpanContext().SpanID().String() + "-01"
			if tp != want {
				t.Errorf("OrderExpired of the traced order: traceparent %q, want %q (the expire order span)", tp, want)
			}
		case untraced.ID.String():
			// No trace to join: the sweeper's span starts one.
			if tp == "" || strings.Contains(tp, request.SpanContext().TraceID().String()) {
				t.Errorf("OrderExpired of the untraced order: traceparent %q", tp)
			}
		}
	}
}
