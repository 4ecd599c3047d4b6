package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/deadletter"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

func TestParseDLQ(t *testing.T) {
	now := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	env := func(k string) string {
		if k == "KAFKA_BROKERS" {
			return "kafka:9092"
		}
		return ""
	}
	pos := deadletter.Position{Topic: "inventory.dlq", Partition: 1, Offset: 7}
	tests := []struct {
		name    string
		args    []string
		getenv  func(string) string
		want    dlqCommand
		wantErr string // a substring of the usage error
	}{
		{name: "list", args: []string{"list"}, want: dlqCommand{verb: "list", brokers: []string{"127.0.0.1:9092"}}},
		{name: "brokers from the environment", args: []string{"list"}, getenv: env,
			want: dlqCommand{verb: "list", brokers: []string{"kafka:9092"}}},
		{name: "brokers flag wins", args: []string{"list", "--brokers", "a:1, b:2"}, getenv: env,
			want: dlqCommand{verb: "list", brokers: []string{"a:1", "b:2"}}},
		{name: "list with every filter", args: []string{"list", "--group", "inventory", "--type", "PaymentProcessed", "--reason", "max_attempts",
			"--order", "o1", "--since", "2h", "--until", "2026-12-02T03:30:00Z", "--json"},
			want: dlqCommand{verb: "list", brokers: []string{"127.0.0.1:9092"}, filtered: true, json: true, filter: deadletter.Filter{
				Group: "inventory", Type: "PaymentProcessed", Reason: "max_attempts", OrderID: "o1",
				Since: now.Add(-2 * time.Hour), Until: time.Date(2026, 12, 2, 3, 30, 0, 0, time.UTC)}}},
		{name: "since a date", args: []string{"list", "-since", "2026-12-01"},
			want: dlqCommand{verb: "list", brokers: []string{"127.0.0.1:9092"}, filtered: true,
				filter: deadletter.Filter{Since: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}}},
		{name: "show", args: []string{"show", "inventory.dlq/1/7"},
			want: dlqCommand{verb: "show", brokers: []string{"127.0.0.1:9092"}, positions: []deadletter.Position{pos}}},
		{name: "replay positions, flags after them", args: []string{"replay", "inventory.dlq/1/7", "payment.dlq/0/0", "--dry-run"},
			want: dlqCommand{verb: "replay", brokers: []string{"127.0.0.1:9092"}, dryRun: true,
				positions: []deadletter.Position{pos, {Topic: "payment.dlq"}}}},
		{name: "replay all", args: []string{"replay", "--all", "--order", "o1"},
			want: dlqCommand{verb: "replay", brokers: []string{"127.0.0.1:9092"}, all: true, filtered: true,
				filter: deadletter.Filter{OrderID: "o1"}}},

		{name: "no command", args: nil, wantErr: "no command"},
		{name: "unknown command", args: []string{"purge"}, wantErr: `unknown command "purge"`},
		{name: "unknown flag", args: []string{"list", "--colour"}, wantErr: "flag provided but not defined"},
		{name: "bad since", args: []string{"list", "--since", "last tuesday"}, wantErr: `--since: "last tuesday" is not an RFC 3339 time`},
		{name: "negative duration", args: []string{"list", "--until", "-5m"}, wantErr: "--until"},
		{name: "until before since", args: []string{"list", "--since", "1h", "--until", "2h"}, wantErr: "is not after since"},
		{name: "list with a position", args: []string{"list", "inventory.dlq/1/7"}, wantErr: "list takes no positions"},
		{name: "show without a position", args: []string{"show"}, wantErr: "show takes one position, got 0"},
		{name: "show two", args: []string{"show", "a.dlq/0/1", "a.dlq/0/2"}, wantErr: "show takes one position, got 2"},
		{name: "bad position", args: []string{"show", "inventory.dlq/one/7"}, wantErr: `partition "one" is not a number`},
		{name: "short position", args: []string{"replay", "inventory.dlq/7"}, wantErr: "want topic/partition/offset"},
		{name: "replay nothing", args: []string{"replay"}, wantErr: "replay needs positions, or --all"},
		{name: "replay both", args: []string{"replay", "--all", "a.dlq/0/1"}, wantErr: "positions or --all, not both"},
		{name: "filters without all", args: []string{"replay", "a.dlq/0/1", "--group", "g"}, wantErr: "only with --all"},
		{name: "empty brokers", args: []string{"list", "--brokers", " , "}, wantErr: "--brokers: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := tt.getenv
			if getenv == nil {
				getenv = func(string) string { return "" }
			}
			got, err := parseDLQ(tt.args, getenv, now)
			if tt.wantErr != "" {
				var ue dlqUsageError
				if !errors.As(err, &ue) || ue.ExitCode() != 2 || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseDLQ(%q) = %v; want a usage error with %q", tt.args, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "usage: sagashopctl dlq") {
					t.Fatalf("usage error without the usage: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseDLQ(%q): %v", tt.args, err)
			}
			if !equalCommands(got, tt.want) {
				t.Fatalf("parseDLQ(%q) =\n %+v\nwant\n %+v", tt.args, got, tt.want)
			}
		})
	}
}

func equalCommands(a, b dlqCommand) bool {
	return a.verb == b.verb && strings.Join(a.brokers, ",") == strings.Join(b.brokers, ",") && a.filter.Group == b.filter.Group &&
		a.filter.Type == b.filter.Type && a.filter.Reason == b.filter.Reason && a.filter.OrderID == b.filter.OrderID &&
		a.filter.Since.Equal(b.filter.Since) && a.filter.Until.Equal(b.filter.Until) && a.filtered == b.filtered &&
		a.all == b.all && a.dryRun == b.dryRun && a.json == b.json && len(a.positions) == len(b.positions) &&
		(len(a.positions) == 0 || a.positions[0] == b.positions[0] && a.positions[len(a.positions)-1] == b.positions[len(b.positions)-1])
}

func testLetters() []deadletter.Letter {
	failed := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	return []deadletter.Letter{
		{
			Position: deadletter.Position{Topic: "inventory.dlq", Partition: 2, Offset: 17},
			Group:    "inventory", Reason: consumer.ReasonMaxAttempts,
			Error:    "apply PaymentProcessed 0193: reserve stock for 0193: ERROR: reservations are refused for this order (SQLSTATE P0001)",
			Original: &deadletter.Position{Topic: events.TopicPayments, Partition: 2, Offset: 40},
			FailedAt: failed, EventID: "e1", EventType: events.TypePaymentProcessed, OrderID: "0193a4f0-0000-7000-8000-000000000001",
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", ReplayCount: 1, ReplayedFrom: "inventory.dlq/2/3",
			Key: []byte("0193a4f0-0000-7000-8000-000000000001"), Value: []byte(`{"order_id":"0193","amount_cents":1299}`),
			Headers: []kafka.Header{{Key: events.HeaderType, Value: []byte(events.TypePaymentProcessed)}, {Key: consumer.HeaderDLQReason, Value: []byte("max_attempts")}},
		},
		{
			Position: deadletter.Position{Topic: "payment.dlq", Partition: 0, Offset: 0},
			Group:    "payment", Key: []byte("poison"), OrderID: "poison", Value: []byte("not json"),
			Problems: []string{"no dlq.reason header"},
		},
	}
}

func TestWriteDLQTable(t *testing.T) {
	var b bytes.Buffer
	letters := testLetters()
	letters[0].Copies = 2 // a message dead-lettered again after a redelivery
	if err := writeDLQTable(&b, letters); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("table:\n%s", b.String())
	}
	for i, want := range [][]string{
		{"FAILED_AT", "GROUP", "TYPE", "ORDER", "REASON", "ERROR", "COPIES", "POSITION"},
		{"2026-12-02T03:04:05Z", "inventory", "PaymentProcessed", "0193a4f0-0000-7000-8000-000000000001", "max_attempts",
			"apply PaymentProcessed 0193: reserve stock for 0193: ERROR:…", "  2  ", "inventory.dlq/2/17"},
		{"-", "payment", "-", "poison", "- (malformed)", "-", "  1  ", "payment.dlq/0/0"},
		{"2 dead letters"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
}

func TestWriteDLQLetter(t *testing.T) {
	var b bytes.Buffer
	if err := writeDLQLetter(&b, testLetters()[0]); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"position:", "inventory.dlq/2/17", "original:", "payments.events/2/40", "trace_id:", "4bf92f3577b34da6a3ce929d0e0e4736",
		"replays:", "replayed_from:", "(SQLSTATE P0001)", "headers:\n  ce_type     PaymentProcessed\n  dlq.reason  max_attempts\n",
		"value:\n  {\n    \"order_id\": \"0193\",\n    \"amount_cents\": 1299\n  }\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := writeDLQLetter(&b, testLetters()[1]); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- (not replayable)", "problem:", "no dlq.reason header", "value:\n  \"not json\"\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWriteDLQJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeDLQJSON(&b, testLetters()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	var got struct {
		Position deadletter.Position `json:"position"`
		Key      string              `json:"key"`
		Value    map[string]any      `json:"value"`
		Headers  map[string]string   `json:"headers"`
		Original *deadletter.Position
	}
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	if got.Position.Offset != 17 || got.Key != "0193a4f0-0000-7000-8000-000000000001" || got.Value["amount_cents"] != 1299.0 ||
		got.Headers["dlq.reason"] != "max_attempts" || got.Original == nil {
		t.Fatalf("JSON %s", lines[0])
	}
	var bad struct{ Value string }
	if err := json.Unmarshal([]byte(lines[1]), &bad); err != nil || bad.Value != "not json" {
		t.Fatalf("a value that is not JSON: %v %s", err, lines[1])
	}
}

// TestDLQCommands runs list, show and replay against the real broker.
func TestDLQCommands(t *testing.T) {
	brokers := testenv.Kafka(t)
	source := testenv.Topics(t, brokers, events.Partitions, "ctlsrc")[0]
	group := testenv.Name("ctl")
	dlqTopic := events.DeadLetterTopic(group)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, brokers, events.Partitions, dlqTopic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := broker.DeleteTopics(ctx, brokers, dlqTopic); err != nil {
			t.Logf("delete %s: %v", dlqTopic, err)
		}
	})
	order := testenv.Name("order")
	e := events.Envelope{ID: "0193a4f0-0000-7000-8000-0000000000e1", Type: events.TypePaymentProcessed, SchemaVersion: 1,
		Source: events.SourcePayment, Subject: order, Time: time.Now().UTC(), CorrelationID: order,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Data: []byte(`{"order_id":"x"}`)}
	letter := events.ToMessage(dlqTopic, e)
	letter.Headers = append(letter.Headers,
		kafka.Header{Key: consumer.HeaderDLQReason, Value: []byte(consumer.ReasonMaxAttempts)},
		kafka.Header{Key: consumer.HeaderDLQError, Value: []byte("reserve: boom")},
		kafka.Header{Key: consumer.HeaderDLQOriginalTopic, Value: []byte(source)},
		kafka.Header{Key: consumer.HeaderDLQOriginalPartition, Value: []byte("0")},
		kafka.Header{Key: consumer.HeaderDLQOriginalOffset, Value: []byte("0")},
		kafka.Header{Key: consumer.HeaderDLQConsumerGroup, Value: []byte(group)},
		kafka.Header{Key: consumer.HeaderDLQFailedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	w := broker.NewWriter(brokers)
	defer w.Close()
	testenv.WaitFor(t, 30*time.Second, "the letter written", func() bool {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		return w.WriteMessages(wctx, letter) == nil
	})
	// The same letter again, as the consumer writes it when the message is
	// redelivered before its offset was committed: one letter, two copies.
	for i, h := range letter.Headers {
		if h.Key == consumer.HeaderDLQFailedAt {
			letter.Headers[i].Value = []byte(time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano))
		}
	}
	if err := w.WriteMessages(ctx, letter); err != nil {
		t.Fatalf("the copy: %v", err)
	}

	getenv := func(k string) string {
		if k == "KAFKA_BROKERS" {
			return strings.Join(brokers, ",")
		}
		return ""
	}
	ctl := func(args ...string) string {
		t.Helper()
		var b bytes.Buffer
		if err := run(ctx, append([]string{"dlq"}, args...), getenv, &b); err != nil {
			t.Fatalf("sagashopctl dlq %s: %v", strings.Join(args, " "), err)
		}
		return b.String()
	}
	list := ctl("list", "--group", group)
	if !strings.Contains(list, order) || !strings.Contains(list, "max_attempts") || !strings.Contains(list, "1 dead letters") {
		t.Fatalf("list:\n%s", list)
	}
	// The position is the last column of the table's one row, its copies
	// the one before.
	fields := strings.Fields(strings.Split(list, "\n")[1])
	position := fields[len(fields)-1]
	if !strings.HasPrefix(position, dlqTopic+"/") || fields[len(fields)-2] != "2" {
		t.Fatalf("position %q, copies %q:\n%s", position, fields[len(fields)-2], list)
	}
	var listed struct {
		Copies     int                   `json:"copies"`
		Duplicates []deadletter.Position `json:"duplicates"`
	}
	if err := json.Unmarshal([]byte(ctl("list", "--group", group, "--json")), &listed); err != nil || listed.Copies != 2 || len(listed.Duplicates) != 1 {
		t.Fatalf("list --json: %+v, %v", listed, err)
	}
	copyAt := listed.Duplicates[0].String()
	if out := ctl("list", "--group", group, "--order", "someone-else"); !strings.Contains(out, "0 dead letters") {
		t.Fatalf("filtered list:\n%s", out)
	}
	if show := ctl("show", position); !strings.Contains(show, "reserve: boom") || !strings.Contains(show, source+"/0/0") {
		t.Fatalf("show:\n%s", show)
	}
	if out := ctl("replay", "--all", "--group", group, "--dry-run"); !strings.Contains(out, "would replay "+position+" -> "+source) ||
		!strings.Contains(out, "1 dead letters would replay") || !strings.Contains(out, "once for its 2 copies") {
		t.Fatalf("dry run:\n%s", out)
	}
	if out := ctl("replay", position, copyAt, "--dry-run"); !strings.Contains(out, "skipped  "+copyAt+": a copy of "+position) ||
		!strings.Contains(out, "1 dead letters would replay") {
		t.Fatalf("dry run of both copies:\n%s", out)
	}
	if out := ctl("replay", "--all", "--group", group); !strings.Contains(out, "replayed "+position+" -> "+source) ||
		!strings.Contains(out, "replay 1, once for its 2 copies)") || !strings.Contains(out, "1 dead letters replayed") {
		t.Fatalf("replay --all:\n%s", out)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: source, Partition: partitionOf(t, ctx, brokers, source), MaxWait: 100 * time.Millisecond})
	defer r.Close()
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	m, err := r.ReadMessage(rctx)
	if err != nil {
		t.Fatalf("the replay on %s: %v", source, err)
	}
	if string(m.Key) != order || events.Header(m, deadletter.HeaderReplayedFrom) != position ||
		events.Header(m, events.HeaderTraceParent) != e.TraceParent || events.Header(m, consumer.HeaderDLQReason) != "" {
		t.Fatalf("replayed %q with headers %v", m.Key, m.Headers)
	}
	// replay --all wrote the letter once, not once per copy: nothing
	// follows it.
	rctx2, rcancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel2()
	if m, err := r.ReadMessage(rctx2); err == nil {
		t.Fatalf("a second replay at %d: %v", m.Offset, m.Headers)
	}

	// Errors that are not usage errors: a position with no letter.
	err = run(ctx, []string{"dlq", "show", dlqTopic + "/0/99999"}, getenv, &bytes.Buffer{})
	var ue dlqUsageError
	if !errors.Is(err, deadletter.ErrNotFound) || errors.As(err, &ue) {
		t.Fatalf("show of a missing letter: %v", err)
	}
	err = run(ctx, []string{"dlq", "replay", position, dlqTopic + "/0/99999"}, getenv, &bytes.Buffer{})
	if !errors.Is(err, deadletter.ErrNotFound) || !strings.Contains(err.Error(), "nothing replayed") {
		t.Fatalf("replay with a missing letter: %v", err)
	}
}

// partitionOf is the partition of source holding a message.
func partitionOf(t *testing.T, ctx context.Context, brokers []string, topic string) int {
	t.Helper()
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := lc.ReadLastOffset()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last > 0 {
			return p.ID
		}
	}
	t.Fatalf("no message on %s", topic)
	return 0
}
