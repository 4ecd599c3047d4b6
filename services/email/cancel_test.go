package main

import (
	"strings"
	"testing"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

// TestTimedOutCancellationSaysSo: the customer of an order cancelled at its
// deadline gets one email that says so, over SMTP, and nothing more when
// the cancellation arrives again or the saga's other deadline events pass
// by on the same topics.
func TestTimedOutCancellationSaysSo(t *testing.T) {
	srv := newSMTPServer(t)
	ts := newTestService(t, testSender(srv.addr))
	orderID := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))

	first := servicetest.Event(t, "test", cancelled(orderID, events.ReasonTimedOut))
	mustApply(t, ts, first)
	// Redelivered under its own id, and the same fact under another id.
	mustApply(t, ts, first)
	mustApply(t, ts, servicetest.Event(t, "test", cancelled(orderID, events.ReasonTimedOut)))

	msgs := srv.received()
	if len(msgs) != 1 || msgs[0].To[0] != ada {
		t.Fatalf("SMTP server received %+v, want one message to %s", msgs, ada)
	}
	for _, want := range []string{"Reason: timed_out", "could not be completed in time", "refunded", "nothing will ship"} {
		if !strings.Contains(msgs[0].Body, want) {
			t.Errorf("body lacks %q:\n%s", want, msgs[0].Body)
		}
	}
	if msgs[0].Subject != "Your order "+orderID+" was cancelled" {
		t.Errorf("subject %q", msgs[0].Subject)
	}
	checkNotified(t, ts, orderID, []string{KindOrderCancelled}, []string{first.ID})
	if v := servicetest.Metric(t, ts.Registry, "emails_sent_total", "kind", KindOrderCancelled); v != 1 {
		t.Errorf("emails_sent_total{order_cancelled} = %v, want 1", v)
	}
	// OrderExpired and ShipmentCancelled are no business of the customer's:
	// email has no handler for them, so the consumer skips them, and the
	// one cancellation email stays the only one.
	for _, typ := range []string{events.TypeOrderExpired, events.TypeShipmentCancelled} {
		if _, ok := ts.handlers()[typ]; ok {
			t.Errorf("email handles %s: it would be a second message about the cancellation", typ)
		}
	}
}
