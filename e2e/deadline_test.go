package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// deadlineStackSaga is the SAGA_DEADLINE of TestDeadline's stack: longer,
// with a margin for a busy machine, than a consumer takes to dead-letter an
// event that keeps failing (10 attempts, backoff doubling from 50ms to 5s:
// at most about 16.5s), so each step's event is dead-lettered before the
// order expires (were it not, inventory would see the cancellation first
// and never try the reservation that is to fail); and short enough for a
// test.
const deadlineStackSaga = 30 * time.Second

// deadLetterStep is one step of the saga whose event is dead-lettered: the
// participant (its consumer group and schema), the event type it fails, and
// the row insert that fails for the scenario's order.
type deadLetterStep struct {
	name     string
	service  string // consumer group, schema <service>_svc
	typ      string // the event type dead-lettered there
	table    string // the table whose insert fails
	when     func(customer, sku string) string
	stuckAt  string // the order's status while its event is dead
	charged  bool   // payment charged the order before the step failed
	reserved bool   // inventory reserved its stock before the step failed
	// refused is the participant's counter (name and labels) of events it
	// refused because the order was cancelled before: what a replay of the
	// dead letter must add one to.
	refused []string
}

// a dead-lettered step's outcome, kept for the replay.
type deadLettered struct {
	step     deadLetterStep
	orderID  string
	customer string
	sku      string
	message  kafka.Message // as read from <group>.dlq
}

// TestDeadline proves the saga's deadline end to end: for each step, an
// order whose event is dead-lettered there ends CANCELLED (timed_out) after
// its deadline, with its money and stock restored, nothing shipped and one
// cancellation email; and the dead letters replayed after the cancellation
// change nothing.
func TestDeadline(t *testing.T) {
	s := startStackEnv(t, map[string][]string{"order": {"SAGA_DEADLINE=" + deadlineStackSaga.String()}})
	steps := []deadLetterStep{
		{
			name: "OrderCreated dead-lettered at payment", service: "payment", typ: events.TypeOrderCreated, table: "payments",
			when: func(customer, _ string) string {
				return fmt.Sprintf(`NEW.customer_id = '%s' AND NEW.status = 'CHARGED'`, customer)
			},
			stuckAt: "PENDING", refused: []string{"charges_refused_total"},
		},
		{
			name: "PaymentProcessed dead-lettered at inventory", service: "inventory", typ: events.TypePaymentProcessed, table: "reservations",
			when: func(_, sku string) string {
				return fmt.Sprintf(`NEW.status = 'RESERVED' AND NEW.items @> '[{"sku": "%s"}]'::jsonb`, sku)
			},
			stuckAt: "PAID", charged: true, refused: []string{"reservations_total", `outcome="refused"`},
		},
		{
			name: "InventoryReserved dead-lettered at shipping", service: "shipping", typ: events.TypeInventoryReserved, table: "shipments",
			when: func(_, sku string) string {
				return fmt.Sprintf(`NEW.items @> '[{"sku": "%s"}]'::jsonb`, sku)
			},
			stuckAt: "RESERVED", charged: true, reserved: true, refused: []string{"shipments_refused_total"},
		},
	}
	var dead []deadLettered
	for i, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			dl, ok := s.with(t).orderTimesOutAfterDeadLetter(step, i)
			if ok {
				dead = append(dead, dl)
			}
		})
	}
	t.Run("late events after cancellation are compensated", func(t *testing.T) {
		if len(dead) != len(steps) {
			t.Fatalf("only %d of %d dead letters to replay", len(dead), len(steps))
		}
		s := s.with(t)
		for _, dl := range dead {
			s.replayChangesNothing(dl)
		}
	})
}

// orderTimesOutAfterDeadLetter places an order whose event step.typ fails
// at step.service until it is dead-lettered, and checks that the order
// ends CANCELLED (timed_out) with everything undone. It reports whether it
// got that far.
func (s *stack) orderTimesOutAfterDeadLetter(step deadLetterStep, n int) (deadLettered, bool) {
	t := s.t
	const price, stock, deposit = 1500, 10, 10_000
	customer, sku := fmt.Sprintf("c-deadline-%d", n), fmt.Sprintf("mug-deadline-%d", n)
	s.putProduct(sku, price, stock)
	s.deposit(customer, deposit)
	drop := s.failInserts(step.service, step.table, "e2e_fail_"+step.service, step.when(customer, sku))
	defer drop()

	start := time.Now()
	o := s.placeOrder(customer, item{SKU: sku, Quantity: 1})
	var placed struct {
		CreatedAt time.Time `json:"created_at"`
		Deadline  time.Time `json:"deadline"`
	}
	s.call(http.MethodGet, "order", "/orders/"+o.OrderID, nil, &placed)
	if got := placed.Deadline.Sub(placed.CreatedAt); got != deadlineStackSaga {
		t.Errorf("deadline is created_at + %v, want + %v", got, deadlineStackSaga)
	}

	// The event fails every attempt and is dead-lettered.
	msg := s.findMessage(events.DeadLetterTopic(step.service), step.typ, o.OrderID)
	failedAt, err := time.Parse(time.RFC3339Nano, events.Header(msg, consumer.HeaderDLQFailedAt))
	if err != nil {
		t.Errorf("dead letter's %s header: %v", consumer.HeaderDLQFailedAt, err)
	}
	deadAfter := failedAt.Sub(placed.CreatedAt)
	if r := events.Header(msg, consumer.HeaderDLQReason); r != consumer.ReasonMaxAttempts {
		t.Errorf("dead letter reason %q, want %s", r, consumer.ReasonMaxAttempts)
	}
	if g := events.Header(msg, consumer.HeaderDLQConsumerGroup); g != step.service {
		t.Errorf("dead letter of group %q, want %s", g, step.service)
	}
	drop()

	// Stuck where the event stopped, until the deadline: charged and
	// reserved as far as it got.
	var now order
	s.call(http.MethodGet, "order", "/orders/"+o.OrderID, nil, &now)
	b, p := s.balance(customer), s.product(sku)
	if time.Since(placed.CreatedAt) < deadlineStackSaga-time.Second {
		if now.Status != step.stuckAt {
			t.Errorf("order %s after its %s was dead-lettered: %s, want %s", o.OrderID, step.typ, now.Status, step.stuckAt)
		}
		if step.charged != (b == deposit-price) {
			t.Errorf("balance %d before the deadline (charged: %v)", b, step.charged)
		}
		if step.reserved != (p.Reserved == 1 && p.Available == stock-1) {
			t.Errorf("stock %+v before the deadline (reserved: %v)", p, step.reserved)
		}
	} else {
		t.Logf("the dead letter came %s after the order was created, too close to the deadline to check the stuck state", deadAfter)
	}
	if now.Status == "SHIPPED" || (now.Status == "CANCELLED" && now.Reason != "timed_out") {
		t.Fatalf("order %s after its %s was dead-lettered: %+v", o.OrderID, step.typ, now)
	}

	final := s.waitTerminalWithin(o.OrderID, deadlineStackSaga+sagaTimeout)
	var cancelled struct {
		CreatedAt time.Time `json:"created_at"`
		UpdatedAt time.Time `json:"updated_at"`
	}
	s.call(http.MethodGet, "order", "/orders/"+o.OrderID, nil, &cancelled)
	took := cancelled.UpdatedAt.Sub(cancelled.CreatedAt)
	if final.Status != "CANCELLED" || final.Reason != "timed_out" {
		t.Fatalf("order %+v, want CANCELLED (timed_out)", final)
	}
	if took < deadlineStackSaga {
		t.Errorf("cancelled %s after it was placed, before its deadline of %s", took, deadlineStackSaga)
	}
	t.Logf("%s: dead-lettered %s after the order was created, CANCELLED (timed_out) %s after it (deadline %s), seen so %s after POST /orders",
		step.name, deadAfter.Round(time.Millisecond), took.Round(time.Millisecond), deadlineStackSaga, time.Since(start).Round(time.Millisecond))

	// Everything undone: money back, stock back, nothing shipped, one
	// cancellation email.
	eventually(t, sagaTimeout, "money and stock restored", func() bool {
		p := s.product(sku)
		return s.balance(customer) == deposit && p.Available == stock && p.Reserved == 0
	})
	var pay payment
	code := s.call(http.MethodGet, "payment", "/payments/"+o.OrderID, nil, &pay)
	switch {
	case step.charged && (code != http.StatusOK || pay.Status != "REFUNDED" || pay.AmountCents != price):
		t.Errorf("payment %d %+v, want REFUNDED %d", code, pay, price)
	case !step.charged && code == http.StatusOK && (pay.Status == "CHARGED" || pay.Status == "REFUNDED"):
		t.Errorf("payment %+v for an order payment never charged", pay)
	}
	s.assertNotShipped(o.OrderID)
	s.waitEmail(o.OrderID, "order_cancelled")
	for _, e := range s.emails(o.OrderID) {
		if e.Kind == "order_shipped" {
			t.Errorf("order_shipped email for a cancelled order: %+v", e)
		}
	}
	if n := s.metric("order", "orders_expired_total"); n < 1 {
		t.Errorf("orders_expired_total = %v", n)
	}
	// One order, one trace: the expiry, shipping's answer and every
	// compensation continue the trace of POST /orders.
	s.assertOrderTrace(o.OrderID, "order", "payment", "inventory", "shipping", "email")
	return deadLettered{step: step, orderID: o.OrderID, customer: customer, sku: sku, message: msg}, !t.Failed()
}

// replayChangesNothing writes a dead letter back to its original topic, as
// an operator replaying it would (its key, value and headers without the
// dlq.* ones), waits until the participant has handled it, and checks that
// it changed nothing: the order was cancelled, so the event is compensated,
// not applied.
func (s *stack) replayChangesNothing(dl deadLettered) {
	t := s.t
	const stock, deposit = 10, 10_000
	topic := events.Header(dl.message, consumer.HeaderDLQOriginalTopic)
	if topic == "" {
		t.Fatalf("dead letter of %s has no %s header", dl.orderID, consumer.HeaderDLQOriginalTopic)
	}
	replay := kafka.Message{Topic: topic, Key: dl.message.Key, Value: dl.message.Value}
	for _, h := range dl.message.Headers {
		if !strings.HasPrefix(h.Key, "dlq.") {
			replay.Headers = append(replay.Headers, h)
		}
	}
	eventID := events.Header(dl.message, events.HeaderID)
	emailsBefore := len(s.emails(dl.orderID))
	refusedBefore := s.metric(dl.step.service, dl.step.refused[0], dl.step.refused[1:]...)
	start := time.Now()
	s.produce(replay)
	eventually(t, sagaTimeout, dl.step.typ+" replayed to "+dl.step.service+" handled", func() bool {
		return s.handled(dl.step.service, eventID)
	})
	t.Logf("%s replayed to %s after the cancellation: handled in %s", dl.step.typ, dl.step.service, time.Since(start).Round(time.Millisecond))
	// Refused because of the cancellation (counted just after the commit
	// that wrote the inbox row).
	refused := func() float64 { return s.metric(dl.step.service, dl.step.refused[0], dl.step.refused[1:]...) }
	eventually(t, 10*time.Second, fmt.Sprintf("%s %v counting the replay", dl.step.service, dl.step.refused), func() bool {
		return refused() >= refusedBefore+1
	})
	if got := refused(); got != refusedBefore+1 {
		t.Errorf("%s %v = %v after the replay, want %v", dl.step.service, dl.step.refused, got, refusedBefore+1)
	}

	var o order
	if s.call(http.MethodGet, "order", "/orders/"+dl.orderID, nil, &o); o.Status != "CANCELLED" || o.Reason != "timed_out" {
		t.Errorf("order %s after the replay of %s: %+v", dl.orderID, dl.step.typ, o)
	}
	if b := s.balance(dl.customer); b != deposit {
		t.Errorf("balance %d after the replay of %s, want %d: charged", b, dl.step.typ, deposit)
	}
	if p := s.product(dl.sku); p.Available != stock || p.Reserved != 0 {
		t.Errorf("stock %+v after the replay of %s: reserved", p, dl.step.typ)
	}
	var p payment
	if code := s.call(http.MethodGet, "payment", "/payments/"+dl.orderID, nil, &p); code == http.StatusOK && p.Status == "CHARGED" {
		t.Errorf("payment %+v after the replay of %s", p, dl.step.typ)
	}
	s.assertNotShipped(dl.orderID)
	if n := len(s.emails(dl.orderID)); n != emailsBefore {
		t.Errorf("%d emails after the replay of %s, were %d", n, dl.step.typ, emailsBefore)
	}
}

// failInserts makes every insert into service's table that matches when (a
// trigger's WHEN condition on NEW) fail, until the returned function drops
// the trigger (it may be called more than once). The consumer sees an
// unclassified database error, retries it MaxAttempts times and
// dead-letters the event: an event that keeps failing for one order, as a
// bug for one kind of order would.
func (s *stack) failInserts(service, table, name, when string) (drop func()) {
	t := s.t
	t.Helper()
	schema := service + "_svc"
	fn := pgx.Identifier{schema, name}.Sanitize()
	tbl := pgx.Identifier{schema, table}.Sanitize()
	trigger := pgx.Identifier{name}.Sanitize()
	s.adminExec(fmt.Sprintf(`CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'e2e: injected failure of the insert into %s'; END $$`, fn, table))
	s.adminExec(fmt.Sprintf(`CREATE TRIGGER %s BEFORE INSERT ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s()`, trigger, tbl, when, fn))
	dropped := false
	return func() {
		if dropped {
			return
		}
		dropped = true
		s.adminExec(fmt.Sprintf(`DROP TRIGGER %s ON %s`, trigger, tbl))
		s.adminExec(fmt.Sprintf(`DROP FUNCTION %s()`, fn))
	}
}

// adminExec runs sql as the superuser in the stack's database.
func (s *stack) adminExec(sql string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.adminURL())
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
}

// handled reports whether service's consumer has recorded event id in its
// inbox: it handled the event and committed.
func (s *stack) handled(service, eventID string) bool {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.adminURL())
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	q := `SELECT count(*) FROM ` + pgx.Identifier{service + "_svc", "processed_events"}.Sanitize() + ` WHERE event_id = $1`
	if err := c.QueryRow(ctx, q, eventID).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n == 1
}

// assertNotShipped checks that shipping has no shipment for the order.
func (s *stack) assertNotShipped(orderID string) {
	s.t.Helper()
	var raw json.RawMessage
	code := s.call(http.MethodGet, "shipping", "/shipments/"+orderID, nil, &raw)
	if code != http.StatusNotFound {
		s.t.Errorf("GET /shipments/%s = %d %s, want 404: nothing ships after a cancellation", orderID, code, raw)
	}
}

// waitTerminalWithin is waitTerminal with a timeout of its own.
func (s *stack) waitTerminalWithin(id string, timeout time.Duration) order {
	s.t.Helper()
	var o order
	eventually(s.t, timeout, "order "+id+" to reach SHIPPED or CANCELLED", func() bool {
		o = order{}
		s.call(http.MethodGet, "order", "/orders/"+id, nil, &o)
		return o.Status == "SHIPPED" || o.Status == "CANCELLED"
	})
	return o
}
