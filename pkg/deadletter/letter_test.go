package deadletter_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/deadletter"
	"github.com/sagashop/sagashop/pkg/events"
)

func TestParsePosition(t *testing.T) {
	tests := []struct {
		in      string
		want    deadletter.Position
		wantErr bool
	}{
		{in: "inventory.dlq/2/17", want: deadletter.Position{Topic: "inventory.dlq", Partition: 2, Offset: 17}},
		{in: "a.dlq/0/0", want: deadletter.Position{Topic: "a.dlq"}},
		{in: "inventory.dlq/2", wantErr: true},
		{in: "inventory.dlq/2/17/3", wantErr: true},
		{in: "/2/17", wantErr: true},
		{in: "inventory.dlq/x/17", wantErr: true},
		{in: "inventory.dlq/-1/17", wantErr: true},
		{in: "inventory.dlq/2/-5", wantErr: true},
		{in: "inventory.dlq/2/", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := deadletter.ParsePosition(tt.in)
			if tt.wantErr {
				if !errors.Is(err, deadletter.ErrInvalid) {
					t.Fatalf("ParsePosition(%q) = %v, %v; want ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParsePosition(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// written is a dead letter as pkg/consumer writes one.
func written(failedAt time.Time) kafka.Message {
	return kafka.Message{
		Topic: "inventory.dlq", Partition: 1, Offset: 42, Time: failedAt,
		Key: []byte("0193a4f0-0000-7000-8000-000000000001"), Value: []byte(`{"order_id":"0193a4f0-0000-7000-8000-000000000001"}`),
		Headers: []kafka.Header{
			{Key: events.HeaderSpecVersion, Value: []byte("1.0")},
			{Key: events.HeaderID, Value: []byte("0193a4f0-0000-7000-8000-0000000000e1")},
			{Key: events.HeaderType, Value: []byte(events.TypePaymentProcessed)},
			{Key: events.HeaderSource, Value: []byte(events.SourcePayment)},
			{Key: events.HeaderTime, Value: []byte("2026-12-01T10:00:00Z")},
			{Key: events.HeaderSubject, Value: []byte("0193a4f0-0000-7000-8000-000000000001")},
			{Key: events.HeaderTraceParent, Value: []byte(traceParent)},
			{Key: deadletter.HeaderReplayCount, Value: []byte("2")},
			{Key: deadletter.HeaderReplayedFrom, Value: []byte("inventory.dlq/1/40")},
			{Key: consumer.HeaderDLQReason, Value: []byte(consumer.ReasonMaxAttempts)},
			{Key: consumer.HeaderDLQError, Value: []byte("reserve: boom")},
			{Key: consumer.HeaderDLQOriginalTopic, Value: []byte(events.TopicPayments)},
			{Key: consumer.HeaderDLQOriginalPartition, Value: []byte("1")},
			{Key: consumer.HeaderDLQOriginalOffset, Value: []byte("7")},
			{Key: consumer.HeaderDLQConsumerGroup, Value: []byte("inventory")},
			{Key: consumer.HeaderDLQFailedAt, Value: []byte(failedAt.Format(time.RFC3339Nano))},
		},
	}
}

func TestDecode(t *testing.T) {
	failedAt := time.Date(2026, 12, 1, 10, 0, 1, 500, time.UTC)
	l := deadletter.Decode(written(failedAt))
	want := deadletter.Letter{
		Position: deadletter.Position{Topic: "inventory.dlq", Partition: 1, Offset: 42},
		Group:    "inventory", Reason: consumer.ReasonMaxAttempts, Error: "reserve: boom",
		Original:  &deadletter.Position{Topic: events.TopicPayments, Partition: 1, Offset: 7},
		FailedAt:  failedAt,
		EventID:   "0193a4f0-0000-7000-8000-0000000000e1",
		EventType: events.TypePaymentProcessed, OrderID: "0193a4f0-0000-7000-8000-000000000001",
		EventSource: events.SourcePayment, EventTime: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", ReplayCount: 2, ReplayedFrom: "inventory.dlq/1/40",
	}
	if l.Position != want.Position || l.Group != want.Group || l.Reason != want.Reason || l.Error != want.Error ||
		*l.Original != *want.Original || !l.FailedAt.Equal(want.FailedAt) || l.EventID != want.EventID ||
		l.EventType != want.EventType || l.OrderID != want.OrderID || l.EventSource != want.EventSource ||
		!l.EventTime.Equal(want.EventTime) || l.TraceID != want.TraceID || l.ReplayCount != want.ReplayCount ||
		l.ReplayedFrom != want.ReplayedFrom || len(l.Problems) != 0 {
		t.Fatalf("Decode:\n got %+v\nwant %+v", l, want)
	}
}

func TestDecodeMalformed(t *testing.T) {
	tests := []struct {
		name         string
		msg          kafka.Message
		wantGroup    string
		wantOrder    string
		wantProblems int
		replayable   bool
	}{
		{
			name:      "no headers at all",
			msg:       kafka.Message{Topic: "payment.dlq", Key: []byte("k1"), Value: []byte("junk")},
			wantGroup: "payment", wantOrder: "k1", wantProblems: 4,
		},
		{
			name: "unreadable failed_at and offsets",
			msg: kafka.Message{Topic: "payment.dlq", Key: []byte("k2"), Headers: []kafka.Header{
				{Key: consumer.HeaderDLQReason, Value: []byte(consumer.ReasonDecode)},
				{Key: consumer.HeaderDLQConsumerGroup, Value: []byte("payment")},
				{Key: consumer.HeaderDLQFailedAt, Value: []byte("yesterday")},
				{Key: consumer.HeaderDLQOriginalTopic, Value: []byte(events.TopicOrders)},
				{Key: consumer.HeaderDLQOriginalPartition, Value: []byte("x")},
			}},
			wantGroup: "payment", wantOrder: "k2", wantProblems: 3, replayable: true,
		},
		{
			// Atoi clamps it to MaxInt64, whose replay would count -MaxInt64-1
			// (FuzzDecode seed replay-count-overflow).
			name: "replay count past int32",
			msg: kafka.Message{Topic: "payment.dlq", Key: []byte("k3"), Headers: []kafka.Header{
				{Key: deadletter.HeaderReplayCount, Value: []byte("99999999999999999999")},
			}},
			wantGroup: "payment", wantOrder: "k3", wantProblems: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := deadletter.Decode(tt.msg)
			if l.Group != tt.wantGroup || l.OrderID != tt.wantOrder || len(l.Problems) != tt.wantProblems {
				t.Fatalf("Decode = %+v", l)
			}
			_, err := deadletter.Message(l, time.Now())
			if tt.replayable != (err == nil) || !tt.replayable && !errors.Is(err, deadletter.ErrNotReplayable) {
				t.Fatalf("Message: %v; replayable %v", err, tt.replayable)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	failedAt := time.Date(2026, 12, 1, 10, 0, 1, 0, time.UTC)
	orig := written(failedAt)
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	m, err := deadletter.Message(deadletter.Decode(orig), now)
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != events.TopicPayments || string(m.Key) != string(orig.Key) || string(m.Value) != string(orig.Value) {
		t.Fatalf("message %s %q %q", m.Topic, m.Key, m.Value)
	}
	var keys []string
	for _, h := range m.Headers {
		keys = append(keys, h.Key)
	}
	wantKeys := []string{events.HeaderSpecVersion, events.HeaderID, events.HeaderType, events.HeaderSource, events.HeaderTime,
		events.HeaderSubject, events.HeaderTraceParent, deadletter.HeaderReplayedFrom, deadletter.HeaderReplayCount, deadletter.HeaderReplayedAt}
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("headers %v, want %v", keys, wantKeys)
	}
	msg := kafka.Message{Headers: m.Headers}
	for k, want := range map[string]string{
		events.HeaderTraceParent:      traceParent,
		deadletter.HeaderReplayedFrom: "inventory.dlq/1/42",
		deadletter.HeaderReplayCount:  "3",
		deadletter.HeaderReplayedAt:   "2026-12-02T03:00:00Z",
	} {
		if got := events.Header(msg, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if _, err := events.FromMessage(m); err != nil {
		t.Fatalf("the replay is not a valid event: %v", err)
	}
}

func TestFilter(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := deadletter.Decode(written(at))
	noTime := l
	noTime.FailedAt = time.Time{}
	tests := []struct {
		name   string
		f      deadletter.Filter
		letter deadletter.Letter
		want   bool
	}{
		{"zero filter", deadletter.Filter{}, l, true},
		{"group", deadletter.Filter{Group: "inventory"}, l, true},
		{"other group", deadletter.Filter{Group: "payment"}, l, false},
		{"type", deadletter.Filter{Type: events.TypePaymentProcessed}, l, true},
		{"other type", deadletter.Filter{Type: events.TypeOrderCreated}, l, false},
		{"reason", deadletter.Filter{Reason: consumer.ReasonMaxAttempts}, l, true},
		{"other reason", deadletter.Filter{Reason: consumer.ReasonDecode}, l, false},
		{"order", deadletter.Filter{OrderID: "0193a4f0-0000-7000-8000-000000000001"}, l, true},
		{"other order", deadletter.Filter{OrderID: "x"}, l, false},
		{"since before", deadletter.Filter{Since: at.Add(-time.Second)}, l, true},
		{"since equal", deadletter.Filter{Since: at}, l, true},
		{"since after", deadletter.Filter{Since: at.Add(time.Second)}, l, false},
		{"until after", deadletter.Filter{Until: at.Add(time.Second)}, l, true},
		{"until equal", deadletter.Filter{Until: at}, l, false},
		{"since without failed_at", deadletter.Filter{Since: at}, noTime, false},
		{"all together", deadletter.Filter{Group: "inventory", Type: events.TypePaymentProcessed, Reason: consumer.ReasonMaxAttempts,
			OrderID: "0193a4f0-0000-7000-8000-000000000001", Since: at, Until: at.Add(time.Minute)}, l, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(tt.letter); got != tt.want {
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
	if err := (deadletter.Filter{Since: at, Until: at}).Validate(); !errors.Is(err, deadletter.ErrInvalid) {
		t.Fatalf("until = since: %v, want ErrInvalid", err)
	}
}

func TestIsTopic(t *testing.T) {
	for topic, want := range map[string]bool{
		events.DeadLetterTopic("inventory"): true,
		"inventory.dlq":                     true,
		".dlq":                              false,
		events.TopicPayments:                false,
		"inventory.dlq.old":                 false,
	} {
		if got := deadletter.IsTopic(topic); got != want {
			t.Errorf("IsTopic(%q) = %v, want %v", topic, got, want)
		}
	}
}
