package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sagashop/sagashop/pkg/deadletter"
	"github.com/sagashop/sagashop/pkg/events"
)

// TestStuckOnDeadLetter: an open order with a recorded dead letter is stuck,
// with the letter and how to replay it; once it has ended it is not, and the
// letter is still shown.
func TestStuckOnDeadLetter(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	id := e.placed()
	e.mustHandle(e.paid(id))

	type body struct {
		Status      string                `json:"status"`
		Stuck       bool                  `json:"stuck"`
		StuckReason string                `json:"stuck_reason"`
		DeadLetters []deadletter.Recorded `json:"dead_letters"`
	}
	get := func() body {
		t.Helper()
		rec := e.do(http.MethodGet, "/orders/"+id, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET = %d %s", rec.Code, rec.Body)
		}
		var b body
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if b := get(); b.Stuck || b.DeadLetters == nil || len(b.DeadLetters) != 0 {
		t.Fatalf("before any dead letter: %+v", b)
	}

	failed := time.Now().UTC().Truncate(time.Microsecond)
	l := deadletter.Letter{
		Position: deadletter.Position{Topic: "inventory.dlq", Partition: 2, Offset: 17},
		Group:    "inventory", Reason: "max_attempts", Error: "insert reservation: boom",
		FailedAt: failed, EventID: "e-1", EventType: events.TypePaymentProcessed, OrderID: id,
	}
	for range 2 { // the watch may hand a letter over twice
		if ok, err := deadletter.Record(e.ctx, e.Pool, l); !ok || err != nil {
			t.Fatalf("Record = %v, %v", ok, err)
		}
	}
	b := get()
	if !b.Stuck || b.Status != "PAID" || len(b.DeadLetters) != 1 ||
		b.StuckReason != "PaymentProcessed dead-lettered by inventory (max_attempts); replay: sagashopctl dlq replay inventory.dlq/2/17" {
		t.Fatalf("with a dead letter: %+v", b)
	}
	if d := b.DeadLetters[0]; d.Topic != "inventory.dlq" || d.Offset != 17 || d.Error != "insert reservation: boom" || !d.FailedAt.Equal(failed) {
		t.Fatalf("dead letter %+v", d)
	}

	// Replayed, the saga goes on and the order ends: no longer stuck.
	e.mustHandle(e.reserved(id))
	e.mustHandle(e.event("shipping", events.OrderShipped{OrderID: id, TrackingNumber: "T-1"}))
	if b := get(); b.Stuck || b.Status != "SHIPPED" || len(b.DeadLetters) != 1 || strings.Contains(b.StuckReason, "dead-lettered") {
		t.Fatalf("after the replay: %+v", b)
	}
}
