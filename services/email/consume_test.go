package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/testenv"
)

const ada = "ada@example.com"

func created(orderID, email string) events.OrderCreated {
	return events.OrderCreated{
		OrderID: orderID, CustomerID: "cust-1", Email: email, Currency: "USD",
		Items: []events.Item{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 500}}, TotalCents: 500,
	}
}

func shipped(orderID string) events.OrderShipped {
	return events.OrderShipped{OrderID: orderID, TrackingNumber: "SSABCDEF123456"}
}

func cancelled(orderID, reason string) events.OrderCancelled {
	return events.OrderCancelled{OrderID: orderID, CustomerID: "cust-1", Reason: reason}
}

func newOrderID() string { return uuid.Must(uuid.NewV7()).String() }

func mustApply(t *testing.T, ts testService, e events.Envelope) {
	t.Helper()
	if err := ts.Apply(t, e); err != nil {
		t.Fatalf("%s: %v", e.Type, err)
	}
}

// checkNotified asserts that the outbox holds exactly one CustomerNotified
// per kind, in order, each caused by the given event.
func checkNotified(t *testing.T, ts testService, orderID string, kinds []string, causes []string) {
	t.Helper()
	out := servicetest.Outbox(t, ts.pool)
	if len(out) != len(kinds) {
		t.Fatalf("outbox has %d events, want %d: %+v", len(out), len(kinds), out)
	}
	for i, o := range out {
		var p events.CustomerNotified
		if err := json.Unmarshal(o.Envelope.Data, &p); err != nil {
			t.Fatal(err)
		}
		if o.Topic != events.TopicEmail || o.Envelope.Type != events.TypeCustomerNotified || p.OrderID != orderID || p.Kind != kinds[i] || o.Envelope.CausationID != causes[i] {
			t.Errorf("outbox[%d] = %+v %+v, want CustomerNotified{%s, %s} on %s caused by %s", i, o, p, orderID, kinds[i], events.TopicEmail, causes[i])
		}
	}
}

func TestOrderShippedBeforeOrderCreatedWaitsForTheRecipient(t *testing.T) {
	srv := newSMTPServer(t)
	ts := newTestService(t, testSender(srv.addr))
	orderID := newOrderID()

	mustApply(t, ts, servicetest.Event(t, "test", shipped(orderID)))

	got := ts.emails(t)
	if len(got) != 1 || got[0].Kind != KindOrderShipped || got[0].Sent || got[0].To != nil {
		t.Fatalf("emails = %+v, want one pending order_shipped email", got)
	}
	if !strings.Contains(got[0].Body, "SSABCDEF123456") {
		t.Errorf("body lacks the tracking number: %q", got[0].Body)
	}
	if out := servicetest.Outbox(t, ts.pool); len(out) != 0 {
		t.Errorf("outbox has %d events before the recipient is known, want none", len(out))
	}
	if n := len(srv.received()); n != 0 {
		t.Errorf("SMTP server received %d messages before the recipient is known, want none", n)
	}
	if v := servicetest.Metric(t, ts.Registry, "emails_pending"); v != 1 {
		t.Errorf("emails_pending = %v, want 1", v)
	}

	createdEvent := servicetest.Event(t, "test", created(orderID, ada))
	mustApply(t, ts, createdEvent)

	got = ts.emails(t)
	if len(got) != 1 || !got[0].Sent || got[0].To == nil || *got[0].To != ada {
		t.Fatalf("emails = %+v, want the order_shipped email sent to %s", got, ada)
	}
	checkNotified(t, ts, orderID, []string{KindOrderShipped}, []string{createdEvent.ID})
	msgs := srv.received()
	if len(msgs) != 1 {
		t.Fatalf("SMTP server received %d messages, want 1", len(msgs))
	}
	if len(msgs[0].To) != 1 || msgs[0].To[0] != ada || msgs[0].Subject != "Your order "+orderID+" has shipped" || !strings.Contains(msgs[0].Body, "SSABCDEF123456") {
		t.Errorf("message = %+v", msgs[0])
	}
	if v := servicetest.Metric(t, ts.Registry, "emails_sent_total", "kind", KindOrderShipped); v != 1 {
		t.Errorf("emails_sent_total{order_shipped} = %v, want 1", v)
	}
	if v := servicetest.Metric(t, ts.Registry, "emails_pending"); v != 0 {
		t.Errorf("emails_pending = %v, want 0", v)
	}

	// Both facts again, under new event ids: nothing more goes out.
	mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))
	mustApply(t, ts, servicetest.Event(t, "test", shipped(orderID)))
	if n := len(srv.received()); n != 1 {
		t.Errorf("SMTP server received %d messages after redelivery, want 1", n)
	}
	checkNotified(t, ts, orderID, []string{KindOrderShipped}, []string{createdEvent.ID})
}

func TestOrderShippedAfterOrderCreatedSendsAtOnce(t *testing.T) {
	srv := newSMTPServer(t)
	ts := newTestService(t, testSender(srv.addr))
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))
	if out := servicetest.Outbox(t, ts.pool); len(out) != 0 {
		t.Fatalf("OrderCreated alone wrote %d events, want none", len(out))
	}

	e := servicetest.Event(t, "test", shipped(orderID))
	mustApply(t, ts, e)

	if got := ts.emails(t); len(got) != 1 || !got[0].Sent || *got[0].To != ada {
		t.Errorf("emails = %+v, want one sent to %s", got, ada)
	}
	checkNotified(t, ts, orderID, []string{KindOrderShipped}, []string{e.ID})
	if msgs := srv.received(); len(msgs) != 1 || msgs[0].To[0] != ada {
		t.Errorf("SMTP server received %+v, want one message to %s", msgs, ada)
	}
}

func TestOrderShippedTwiceSendsOneEmail(t *testing.T) {
	srv := newSMTPServer(t)
	ts := newTestService(t, testSender(srv.addr))
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))

	first, second := servicetest.Event(t, "test", shipped(orderID)), servicetest.Event(t, "test", shipped(orderID))
	mustApply(t, ts, first)
	mustApply(t, ts, second)

	if got := ts.emails(t); len(got) != 1 {
		t.Errorf("%d emails, want 1: %+v", len(got), got)
	}
	checkNotified(t, ts, orderID, []string{KindOrderShipped}, []string{first.ID})
	if n := len(srv.received()); n != 1 {
		t.Errorf("SMTP server received %d messages, want 1", n)
	}
	if v := servicetest.Metric(t, ts.Registry, "emails_sent_total", "kind", KindOrderShipped); v != 1 {
		t.Errorf("emails_sent_total{order_shipped} = %v, want 1", v)
	}
}

func TestOrderCancelledSendsOneEmail(t *testing.T) {
	ts := newTestService(t, nil) // no SMTP server: recorded as sent only
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))

	first := servicetest.Event(t, "test", cancelled(orderID, events.ReasonOutOfStock))
	mustApply(t, ts, first)
	mustApply(t, ts, servicetest.Event(t, "test", cancelled(orderID, events.ReasonOutOfStock)))

	got := ts.emails(t)
	if len(got) != 1 || got[0].Kind != KindOrderCancelled || !got[0].Sent || *got[0].To != ada {
		t.Fatalf("emails = %+v, want one order_cancelled email sent to %s", got, ada)
	}
	if got[0].Subject != "Your order "+orderID+" was cancelled" || !strings.Contains(got[0].Body, "Reason: out_of_stock") || !strings.Contains(got[0].Body, "refunded") {
		t.Errorf("subject %q body %q, want the cancellation with its reason", got[0].Subject, got[0].Body)
	}
	checkNotified(t, ts, orderID, []string{KindOrderCancelled}, []string{first.ID})
	if v := servicetest.Metric(t, ts.Registry, "emails_sent_total", "kind", KindOrderCancelled); v != 1 {
		t.Errorf("emails_sent_total{order_cancelled} = %v, want 1", v)
	}
}

func TestOrderCancelledBeforeOrderCreatedWaits(t *testing.T) {
	ts := newTestService(t, nil)
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", cancelled(orderID, events.ReasonPaymentFailed)))
	if got := ts.emails(t); len(got) != 1 || got[0].Sent || !strings.Contains(got[0].Body, "could not take the payment") {
		t.Fatalf("emails = %+v, want one pending, explaining the failed payment", got)
	}
	e := servicetest.Event(t, "test", created(orderID, ada))
	mustApply(t, ts, e)
	if got := ts.emails(t); len(got) != 1 || !got[0].Sent || *got[0].To != ada {
		t.Fatalf("emails = %+v, want one sent to %s", got, ada)
	}
	checkNotified(t, ts, orderID, []string{KindOrderCancelled}, []string{e.ID})
}

func TestOrderCreatedV1GivesTheRecipient(t *testing.T) {
	ts := newTestService(t, nil)
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", shipped(orderID)))
	v1 := servicetest.Event(t, "test", created(orderID, ada))
	v1.SchemaVersion = 1
	v1.Data = json.RawMessage(`{"order_id":"` + orderID + `","customer_id":"cust-1","customer_email":"old@example.com","items":[],"total_cents":0}`)
	mustApply(t, ts, v1)
	if got := ts.emails(t); len(got) != 1 || !got[0].Sent || *got[0].To != "old@example.com" {
		t.Errorf("emails = %+v, want one sent to the v1 customer_email", got)
	}
}

func TestSMTPFailureIsRetriedAndRecordsNothing(t *testing.T) {
	srv := newSMTPServer(t)
	ts := newTestService(t, testSender(srv.addr))
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))
	srv.failMail("451 4.3.0 try again later")

	e := servicetest.Event(t, "test", shipped(orderID))
	err := ts.Apply(t, e)
	if !errors.Is(err, consumer.ErrTransient) || errors.Is(err, consumer.ErrPermanent) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if got := ts.emails(t); len(got) != 0 {
		t.Errorf("emails = %+v after a failed delivery, want none (the transaction rolled back)", got)
	}
	if out := servicetest.Outbox(t, ts.pool); len(out) != 0 {
		t.Errorf("outbox has %d events after a failed delivery, want none", len(out))
	}
	if v := servicetest.Metric(t, ts.Registry, "emails_sent_total", "kind", KindOrderShipped); v != 0 {
		t.Errorf("emails_sent_total{order_shipped} = %v, want 0", v)
	}

	// The consumer retries the same event once the server is back.
	srv.failMail("")
	mustApply(t, ts, e)
	if got := ts.emails(t); len(got) != 1 || !got[0].Sent {
		t.Errorf("emails = %+v, want one sent", got)
	}
	checkNotified(t, ts, orderID, []string{KindOrderShipped}, []string{e.ID})
	if n := len(srv.received()); n != 1 {
		t.Errorf("SMTP server received %d messages, want 1", n)
	}
}

// emails_sent_total follows the committed record: an attempt that delivers
// and then fails to commit is not counted, though the mail server has the
// email (delivery is at-least-once); its redelivery is counted once.
func TestRolledBackSendIsNotCounted(t *testing.T) {
	srv := newSMTPServer(t)
	ts := newTestService(t, testSender(srv.addr))
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))
	e := servicetest.Event(t, "test", shipped(orderID))

	h := servicetest.Handler(t, ts.handlers(), e.Type)
	if err := servicetest.Deliver(t, ts.pool, servicetest.RollBack(h), e); !errors.Is(err, servicetest.ErrRolledBack) {
		t.Fatalf("err = %v, want the rollback", err)
	}
	if v := servicetest.Metric(t, ts.Registry, "emails_sent_total", "kind", KindOrderShipped); v != 0 {
		t.Errorf("emails_sent_total{order_shipped} = %v after a rolled-back attempt, want 0", v)
	}
	if got := ts.emails(t); len(got) != 0 {
		t.Errorf("emails = %+v after a rolled-back attempt, want none", got)
	}
	if n := len(srv.received()); n != 1 {
		t.Errorf("SMTP server received %d messages from the rolled-back attempt, want 1 (delivered before commit)", n)
	}

	mustApply(t, ts, e)
	if v := servicetest.Metric(t, ts.Registry, "emails_sent_total", "kind", KindOrderShipped); v != 1 {
		t.Errorf("emails_sent_total{order_shipped} = %v after the committed retry, want 1", v)
	}
	if n := len(srv.received()); n != 2 {
		t.Errorf("SMTP server received %d messages, want 2 (at-least-once)", n)
	}
}

func TestSMTPFailureOnOrderCreatedKeepsEmailsPending(t *testing.T) {
	// A mail server that is not there: connection refused, a network error
	// the consumer retries for as long as it takes.
	ts := newTestService(t, testSender(closedAddr(t)))
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", shipped(orderID)))

	err := ts.Apply(t, servicetest.Event(t, "test", created(orderID, ada)))
	var netErr net.Error
	if !errors.Is(err, consumer.ErrTransient) || errors.Is(err, consumer.ErrPermanent) || !errors.As(err, &netErr) {
		t.Fatalf("err = %v, want a transient network error", err)
	}
	if got := ts.emails(t); len(got) != 1 || got[0].Sent || got[0].To != nil {
		t.Errorf("emails = %+v, want the email still pending", got)
	}
	if _, err := getRecipient(context.Background(), ts.pool, uuid.MustParse(orderID)); !errors.Is(err, ErrNotFound) {
		t.Errorf("recipient stored despite the failed delivery: %v", err)
	}
	if out := servicetest.Outbox(t, ts.pool); len(out) != 0 {
		t.Errorf("outbox has %d events, want none", len(out))
	}
}

// A delivery failure is transient, retried in place for as long as it takes,
// unless the mail server refuses the recipient's address for good: retrying
// that would hold up the events behind it forever, so it is permanent.
func TestDeliveryFailureClassification(t *testing.T) {
	tests := []struct {
		name string
		addr func(t *testing.T) string
		want error // consumer.ErrTransient or consumer.ErrPermanent
	}{
		{"mail server down", closedAddr, consumer.ErrTransient},
		{"451 to MAIL FROM", refusingAddr("451 4.3.0 try again later", ""), consumer.ErrTransient},
		{"550 to MAIL FROM", refusingAddr("550 5.7.1 sender rejected", ""), consumer.ErrTransient},
		{"450 to RCPT TO", refusingAddr("", "450 4.2.1 mailbox busy"), consumer.ErrTransient},
		{"552 to RCPT TO", refusingAddr("", "552 5.2.2 mailbox full"), consumer.ErrTransient},
		{"554 to RCPT TO", refusingAddr("", "554 5.7.1 relay access denied"), consumer.ErrTransient},
		{"550 to RCPT TO", refusingAddr("", "550 5.1.1 no such user"), consumer.ErrPermanent},
		{"553 to RCPT TO", refusingAddr("", "553 5.1.3 bad address syntax"), consumer.ErrPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestService(t, testSender(tt.addr(t)))
			orderID := newOrderID()
			mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))
			err := ts.Apply(t, servicetest.Event(t, "test", shipped(orderID)))
			other := consumer.ErrPermanent
			if tt.want == consumer.ErrPermanent {
				other = consumer.ErrTransient
			}
			if !errors.Is(err, tt.want) || errors.Is(err, other) {
				t.Fatalf("err = %v, want %v and not %v", err, tt.want, other)
			}
			if got := ts.emails(t); len(got) != 0 {
				t.Errorf("emails = %+v after a failed delivery, want none", got)
			}
			if out := servicetest.Outbox(t, ts.pool); len(out) != 0 {
				t.Errorf("outbox has %d events after a failed delivery, want none", len(out))
			}
		})
	}
}

// An OrderCreated that commits while OrderShipped's transaction is still
// open must not leave the email pending: the order lock makes it wait.
func TestOrderCreatedDuringOrderShippedWaitsForIt(t *testing.T) {
	ts := newTestService(t, nil)
	ctx := context.Background()
	orderID := newOrderID()

	txShipped, err := ts.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txShipped.Rollback(ctx)
	if err := ts.onOrderShipped(ctx, txShipped, servicetest.Event(t, "test", shipped(orderID))); err != nil {
		t.Fatal(err)
	}

	conn, err := ts.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var pid int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	createdEvent := servicetest.Event(t, "test", created(orderID, ada))
	h := servicetest.Handler(t, ts.handlers(), createdEvent.Type)
	done := make(chan error, 1)
	go func() { done <- servicetest.Deliver(t, conn, h, createdEvent) }()
	testenv.WaitFor(t, 5*time.Second, "OrderCreated to wait for the order lock", func() bool {
		var waiting bool
		err := ts.pool.QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting)
		return err == nil && waiting
	})
	if err := txShipped.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := ts.emails(t); len(got) != 1 || !got[0].Sent || *got[0].To != ada {
		t.Errorf("emails = %+v, want one sent to %s", got, ada)
	}
}

func TestMalformedEventsArePermanent(t *testing.T) {
	orderID := newOrderID()
	tests := []struct {
		name    string
		payload events.Payload
		data    string // replaces the data when set
		version int    // replaces the schema version when set
	}{
		{name: "OrderCreated not JSON", payload: created(orderID, ada), data: `{"order_id":`},
		{name: "OrderCreated without order id", payload: created(orderID, ada), data: `{"email":"ada@example.com"}`},
		{name: "OrderCreated with SQL for an order id", payload: created(orderID, ada), data: `{"order_id":"1' OR '1'='1","email":"ada@example.com"}`},
		{name: "OrderCreated with a 10 kB order id", payload: created(orderID, ada), data: `{"order_id":"` + strings.Repeat("a", 10<<10) + `","email":"ada@example.com"}`},
		{name: "OrderCreated without email", payload: created(orderID, "")},
		{name: "OrderCreated with a header-injecting email", payload: created(orderID, "ada@example.com\r\nBcc: eve@example.com")},
		{name: "OrderCreated of an unknown version", payload: created(orderID, ada), version: 9},
		{name: "OrderShipped not JSON", payload: shipped(orderID), data: `nope`},
		{name: "OrderShipped with a bad order id", payload: shipped(orderID), data: `{"order_id":"order-1"}`},
		{name: "OrderShipped with the wrong type", payload: shipped(orderID), data: `{"order_id":42}`},
		{name: "OrderCancelled without order id", payload: cancelled(orderID, "x"), data: `{"reason":"x"}`},
		{name: "OrderCancelled with a bad order id", payload: cancelled(orderID, "x"), data: `{"order_id":"{` + orderID + `}"}`},
	}
	ts := newTestService(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := servicetest.Event(t, "test", tt.payload)
			if tt.data != "" {
				e.Data = json.RawMessage(tt.data)
			}
			if tt.version != 0 {
				e.SchemaVersion = tt.version
			}
			if err := ts.Apply(t, e); !errors.Is(err, consumer.ErrPermanent) {
				t.Errorf("err = %v, want a permanent error", err)
			}
		})
	}
	if got := ts.emails(t); len(got) != 0 {
		t.Errorf("emails = %+v, want none", got)
	}
	if n := servicetest.Count(t, ts.pool, `SELECT count(*) FROM recipients`); n != 0 {
		t.Errorf("%d recipients, want none", n)
	}
}
