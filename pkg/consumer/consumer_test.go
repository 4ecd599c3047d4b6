package consumer_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/testenv"
)

func TestHappyPath(t *testing.T) {
	t.Parallel()
	s := newStack(t, events.Partitions)

	// Every event continues a producer's trace of its own.
	var want []events.Envelope
	parents := map[string]trace.SpanContext{} // by event id
	for seq := 1; seq <= 6; seq++ {
		for k := range 5 {
			e := event(t, fmt.Sprintf("order-%d", k), seq)
			parent := randomSpanContext(t)
			e.TraceParent = fmt.Sprintf("00-%s-%s-01", parent.TraceID(), parent.SpanID())
			parents[e.ID] = parent
			want = append(want, e)
		}
	}
	s.produceEvents(want...)

	// The first handler call waits until the lag gauge has seen the whole
	// backlog, so lag is checked both ways.
	gate := make(chan struct{})
	logger := telemetry.NewLogger(s.logs, "consumer-test", 0)
	recorder := tracetest.NewSpanRecorder()
	cfg := s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			logger.InfoContext(ctx, "effect applied")
			return appendEffect("first")(ctx, tx, e)
		},
	})
	cfg.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	stop := s.start(cfg, func(c *consumer.Consumer) { consumer.SetLagInterval(c, 100*time.Millisecond) })

	group := map[string]string{"group": s.group}
	testenv.WaitFor(t, 20*time.Second, "lag of the whole backlog", func() bool {
		return metric(t, s.reg, "consumer_lag", group) == float64(len(want))
	})
	close(gate)

	checkOnceInOrder(t, s.waitEffects(len(want), 20*time.Second), want)
	if got := metric(t, s.reg, "consumer_messages_processed_total", group); got != float64(len(want)) {
		t.Errorf("processed_total = %v, want %d", got, len(want))
	}
	if got := metric(t, s.reg, "consumer_processing_duration_seconds", group); got != float64(len(want)) {
		t.Errorf("processing_duration_seconds count = %v, want %d", got, len(want))
	}
	testenv.WaitFor(t, 20*time.Second, "lag 0 on every partition", func() bool {
		return series(t, s.reg, "consumer_lag", group) == events.Partitions && metric(t, s.reg, "consumer_lag", group) == 0
	})

	// Spans continue the producers' traces.
	testenv.WaitFor(t, 5*time.Second, "a span per event", func() bool { return len(recorder.Ended()) >= len(want) })
	for _, span := range recorder.Ended() {
		attrs := map[attribute.Key]attribute.Value{}
		for _, kv := range span.Attributes() {
			attrs[kv.Key] = kv.Value
		}
		id := attrs["messaging.message.id"].AsString()
		parent, ok := parents[id]
		if !ok {
			t.Fatalf("span for unknown event %q", id)
		}
		if span.Name() != s.topic+" process" || span.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("span %q kind %v, want %q consumer", span.Name(), span.SpanKind(), s.topic+" process")
		}
		if span.Parent().SpanID() != parent.SpanID() || span.SpanContext().TraceID() != parent.TraceID() || !span.Parent().IsRemote() {
			t.Errorf("span of %s: parent %v, want remote %v", id, span.Parent(), parent)
		}
		for k, v := range map[attribute.Key]string{
			"messaging.system":                   "kafka",
			"messaging.destination.name":         s.topic,
			"messaging.operation.type":           "process",
			"messaging.consumer.group.name":      s.group,
			"messaging.destination.partition.id": attrs["messaging.destination.partition.id"].AsString(),
		} {
			if attrs[k].AsString() != v || v == "" {
				t.Errorf("span attribute %s = %q, want %q", k, attrs[k].AsString(), v)
			}
		}
		if attrs[telemetry.OrderID].AsString() == "" || attrs["messaging.kafka.offset"].Type() != attribute.INT64 {
			t.Errorf("span lacks order.id or offset: %v", span.Attributes())
		}
	}

	// Log lines written inside a message carry its trace, span, order and event.
	lines := s.logs.lines(t, "effect applied")
	if len(lines) != len(want) {
		t.Fatalf("%d 'effect applied' lines, want %d", len(lines), len(want))
	}
	for _, l := range lines {
		parent, ok := parents[fmt.Sprint(l[telemetry.LogEventID])]
		if !ok || l[telemetry.LogTraceID] != parent.TraceID().String() || l[telemetry.LogSpanID] == nil || l[telemetry.LogOrderID] == nil {
			t.Errorf("log line without the message's ids: %v", l)
		}
	}

	// Offsets were committed: a new member of the group sees only what
	// is produced after the first one stopped.
	stop()
	marker := event(t, "order-0", 7)
	s.produceEvents(marker)
	s.start(s.config(map[string]consumer.Handler{typeAppended: appendEffect("second")}))
	effs := s.waitEffects(len(want)+1, 20*time.Second)
	checkOnceInOrder(t, effs, append(want, marker))
	for _, e := range effs {
		if e.Consumer == "second" && e.EventID != marker.ID {
			t.Errorf("second consumer re-applied event %s (seq %d of %s)", e.EventID, e.Seq, e.Key)
		}
	}
	if got := metric(t, s.reg, "consumer_duplicates_total", group); got != 0 {
		t.Errorf("second consumer was redelivered %v events", got)
	}
}

func TestDuplicatesAndRestart(t *testing.T) {
	t.Parallel()
	s := newStack(t, events.Partitions)

	batch := func(from, to int) []events.Envelope {
		var envs []events.Envelope
		for seq := from; seq <= to; seq++ {
			for k := range 4 {
				envs = append(envs, event(t, fmt.Sprintf("order-%d", k), seq))
			}
		}
		return envs
	}
	first := batch(1, 5)
	// The same envelope again: what a producer retry or relay restart sends.
	s.produceEvents(append(first, first[5])...)

	slow := appendEffect("first")
	stop := s.start(s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			time.Sleep(20 * time.Millisecond)
			return slow(ctx, tx, e)
		},
	}))
	s.waitEffects(8, 20*time.Second)
	stop() // mid-stream

	second := batch(6, 10)
	s.produceEvents(append(second, second[3], first[0])...)
	s.start(s.config(map[string]consumer.Handler{typeAppended: appendEffect("second")}))

	all := append(first, second...)
	s.waitEffects(len(all), 20*time.Second)
	group := map[string]string{"group": s.group}
	testenv.WaitFor(t, 20*time.Second, "3 duplicates counted", func() bool {
		return metric(t, s.reg, "consumer_duplicates_total", group) >= 3
	})
	checkOnceInOrder(t, s.effects(), all)
	if n := len(s.logs.lines(t, "duplicate event skipped")); n < 3 {
		t.Errorf("%d 'duplicate event skipped' log lines, want at least 3", n)
	}
}

func TestRebalance(t *testing.T) {
	t.Parallel()
	s := newStack(t, events.Partitions)
	var want []events.Envelope
	// Enough work for the first member (30 ms a message, 18 s in all) that
	// it is still busy when the second has joined, a heartbeat (1 s) and a
	// rebalance later; the second member is fast. (At 10 ms, 6 s in all, a
	// fresh-clone CI run once saw the first member finish before the
	// rebalance did.)
	for seq := 1; seq <= 100; seq++ {
		for k := range 6 {
			want = append(want, event(t, fmt.Sprintf("order-%d", k), seq))
		}
	}
	s.produceEvents(want...)
	slow := appendEffect("first")

	// A second member joins mid-stream, then the first leaves: partitions
	// move twice while messages are in flight.
	stopFirst := s.start(s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			time.Sleep(30 * time.Millisecond)
			return slow(ctx, tx, e)
		},
	}))
	s.waitEffects(15, 20*time.Second)
	s.start(s.config(map[string]consumer.Handler{typeAppended: appendEffect("second")}))
	var effs []effect
	testenv.WaitFor(t, 30*time.Second, "the second member to take over partitions", func() bool {
		effs = s.effects()
		for _, e := range effs {
			if e.Consumer == "second" {
				return true
			}
		}
		if len(effs) == len(want) {
			t.Fatalf("the first member applied all %d events before the second joined", len(want))
		}
		return false
	})
	stopFirst()

	checkOnceInOrder(t, s.waitEffects(len(want), 30*time.Second), want)
}

func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	s := newStack(t, events.Partitions)
	const key = "order-poison"

	noHeaders := kafka.Message{Key: []byte(key), Value: []byte(`{"key":"order-poison","seq":100}`)}
	badJSON := envelope(t, typeAppended, key, []byte(`not json`))
	future, err := events.New("consumer-test", events.OrderCreated{OrderID: key, CustomerID: "c", Email: "e@example.com", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	future.SchemaVersion = 99
	failing := event(t, key, -1)   // handler always fails, unclassified
	panicking := event(t, key, -2) // handler panics
	good := []events.Envelope{event(t, key, 1), event(t, key, 2), event(t, key, 3)}

	msgs := []kafka.Message{
		noHeaders,
		events.ToMessage(s.topic, badJSON),
		events.ToMessage(s.topic, future),
		events.ToMessage(s.topic, failing),
		events.ToMessage(s.topic, panicking),
	}
	for _, e := range good {
		msgs = append(msgs, events.ToMessage(s.topic, e))
	}
	s.produce(msgs...)

	var attempts sync.Map // event id -> *atomic.Int32
	count := func(id string) int32 {
		n, _ := attempts.LoadOrStore(id, new(atomic.Int32))
		return n.(*atomic.Int32).Add(1)
	}
	cfg := s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			count(e.ID)
			switch e.ID {
			case failing.ID:
				return errors.New("something odd")
			case panicking.ID:
				panic("handler bug")
			}
			return appendEffect("c")(ctx, tx, e)
		},
		events.TypeOrderCreated: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			count(e.ID)
			_, err := events.Decode[events.OrderCreated](e)
			return err
		},
	})
	// The dead-letter producer fails at first; the writes are retried.
	flaky := &flakyPublisher{fails: 2, next: s.writer}
	cfg.DeadLetter = flaky
	// The event of a newer version is retried for a while, then given up.
	cfg.UnknownVersionWait = 300 * time.Millisecond
	s.start(cfg)

	checkOnceInOrder(t, s.waitEffects(len(good), 20*time.Second), good)

	dead := readTopic(t, s.brokers, s.dlq, len(msgs)-len(good))
	wantReasons := []string{consumer.ReasonDecode, consumer.ReasonHandler, consumer.ReasonUnknownVersion, consumer.ReasonMaxAttempts, consumer.ReasonMaxAttempts}
	var partition string
	lastOffset := int64(-1)
	for i, m := range dead {
		orig := msgs[i]
		if string(m.Key) != key || string(m.Value) != string(orig.Value) {
			t.Errorf("dead letter %d: key %q value %q, want %q %q", i, m.Key, m.Value, key, orig.Value)
		}
		for _, h := range orig.Headers {
			if events.Header(m, h.Key) != string(h.Value) {
				t.Errorf("dead letter %d: header %s = %q, want the original %q", i, h.Key, events.Header(m, h.Key), h.Value)
			}
		}
		if got := events.Header(m, consumer.HeaderDLQReason); got != wantReasons[i] {
			t.Errorf("dead letter %d: reason %q, want %q", i, got, wantReasons[i])
		}
		if events.Header(m, consumer.HeaderDLQError) == "" {
			t.Errorf("dead letter %d: no error header", i)
		}
		if got := events.Header(m, consumer.HeaderDLQOriginalTopic); got != s.topic {
			t.Errorf("dead letter %d: original topic %q, want %q", i, got, s.topic)
		}
		if got := events.Header(m, consumer.HeaderDLQConsumerGroup); got != s.group {
			t.Errorf("dead letter %d: group %q, want %q", i, got, s.group)
		}
		if _, err := time.Parse(time.RFC3339Nano, events.Header(m, consumer.HeaderDLQFailedAt)); err != nil {
			t.Errorf("dead letter %d: failed at: %v", i, err)
		}
		p := events.Header(m, consumer.HeaderDLQOriginalPartition)
		if partition == "" {
			partition = p
		}
		offset, err := strconv.ParseInt(events.Header(m, consumer.HeaderDLQOriginalOffset), 10, 64)
		if p != partition || err != nil || offset <= lastOffset {
			t.Errorf("dead letter %d: from partition %q offset %d, want partition %q after offset %d", i, p, offset, partition, lastOffset)
		}
		lastOffset = offset
	}
	for i, want := range map[int]string{0: events.ErrMissingHeader.Error(), 2: events.ErrUnknownVersion.Error(), 4: "handler panicked"} {
		if got := events.Header(dead[i], consumer.HeaderDLQError); !strings.Contains(got, want) {
			t.Errorf("dead letter %d: error %q, want it to mention %q", i, got, want)
		}
	}

	group := map[string]string{"group": s.group}
	for reason, want := range map[string]float64{consumer.ReasonDecode: 1, consumer.ReasonHandler: 1, consumer.ReasonUnknownVersion: 1, consumer.ReasonMaxAttempts: 2} {
		if got := metric(t, s.reg, "consumer_dead_lettered_total", map[string]string{"group": s.group, "reason": reason}); got != want {
			t.Errorf("dead_lettered_total{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	// Permanent errors are not retried; unclassified ones are, MaxAttempts
	// times; a newer version is, until UnknownVersionWait has passed.
	newer := metric(t, s.reg, "consumer_unknown_version_retries_total", group)
	if newer < 1 {
		t.Errorf("unknown_version_retries_total = %v, want at least 1", newer)
	}
	for id, want := range map[string]int32{badJSON.ID: 1, future.ID: int32(newer) + 1, failing.ID: 3, panicking.ID: 3} {
		var got int32
		if n, ok := attempts.Load(id); ok {
			got = n.(*atomic.Int32).Load()
		}
		if got != want {
			t.Errorf("event %s: %d handler calls, want %d", id, got, want)
		}
	}
	if got := metric(t, s.reg, "consumer_retries_total", group); got != 4+newer {
		t.Errorf("retries_total = %v, want 4 + %v of the newer version", got, newer)
	}
	flaky.mu.Lock()
	if flaky.calls != len(dead)+2 {
		t.Errorf("%d dead-letter writes, want %d (two failed)", flaky.calls, len(dead)+2)
	}
	flaky.mu.Unlock()
}

func TestTransientErrorIsRetriedInPlace(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1) // one partition: the whole topic is one order

	var want []events.Envelope
	for seq := 1; seq <= 4; seq++ {
		want = append(want, event(t, "order-a", seq), event(t, "order-b", seq))
	}
	s.produceEvents(want...)
	flaky := want[2] // order-a seq 2
	var calls atomic.Int32
	s.start(s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			if e.ID == flaky.ID && calls.Add(1) <= 3 {
				return fmt.Errorf("update order: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize access"})
			}
			return appendEffect("c")(ctx, tx, e)
		},
	}))

	effs := s.waitEffects(len(want), 20*time.Second)
	checkOnceInOrder(t, effs, want)
	for i, e := range effs {
		if e.EventID != want[i].ID {
			t.Fatalf("effect %d is %s seq %d, want the partition's order (%s seq %d)", i, e.Key, e.Seq, want[i].Subject, i/2+1)
		}
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d calls for the flaky event, want 4", n)
	}
	if got := metric(t, s.reg, "consumer_retries_total", map[string]string{"group": s.group}); got != 3 {
		t.Errorf("retries_total = %v, want 3", got)
	}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", map[string]string{"group": s.group}); got != 0 {
		t.Errorf("dead_lettered_total = %v, want 0", got)
	}
}

func TestAfterCommitRunsOnlyForTheCommittedAttempt(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	e := event(t, "order-h", 1)
	s.produceEvents(e)
	var attempts, hooks atomic.Int32
	s.start(s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			consumer.AfterCommit(ctx, func() { hooks.Add(1) })
			if attempts.Add(1) <= 2 {
				// A transient outside failure: retried, and its hook dropped.
				return consumer.Transient(errors.New("mail server says 451, try later"))
			}
			return appendEffect("c")(ctx, tx, e)
		},
	}))
	s.waitEffects(1, 20*time.Second)
	testenv.WaitFor(t, 5*time.Second, "the hook of the committed attempt", func() bool { return hooks.Load() == 1 })
	if n := attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", map[string]string{"group": s.group}); got != 0 {
		t.Errorf("dead_lettered_total = %v, want 0", got)
	}
	if n := hooks.Load(); n != 1 {
		t.Errorf("hook ran %d times, want once", n)
	}
}

func TestShutdownDuringRetries(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	stuck, next := event(t, "order-s", 1), event(t, "order-s", 2)
	s.produceEvents(stuck, next)
	stop := s.start(s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			return &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
		},
	}))
	testenv.WaitFor(t, 20*time.Second, "retries", func() bool {
		return metric(t, s.reg, "consumer_retries_total", map[string]string{"group": s.group}) >= 2
	})
	began := time.Now()
	stop()
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Run took %s to return while retrying", d)
	}
	if effs := s.effects(); len(effs) != 0 {
		t.Fatalf("effects of a failing handler: %v", effs)
	}

	// The stuck message was not committed, nor skipped: the next member
	// of the group starts with it.
	s.start(s.config(map[string]consumer.Handler{typeAppended: appendEffect("c")}))
	effs := s.waitEffects(2, 20*time.Second)
	checkOnceInOrder(t, effs, []events.Envelope{stuck, next})
	if effs[0].EventID != stuck.ID {
		t.Errorf("first effect is %s, want the stuck event", effs[0].EventID)
	}
}

// A message of a handled type that did not travel its route (on another
// type's topic, or from a service that does not produce it) is a forgery or
// a bug: dead-lettered with reason unexpected_source and never applied,
// while the genuine events around it are.
func TestEventOffItsRouteIsDeadLettered(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	other := testenv.Topics(t, s.brokers, 1, "consumer-other")[0]
	const typeElsewhere = "test.Elsewhere" // travels on the other topic
	var applied atomic.Int32
	handlers := map[string]consumer.Handler{
		typeAppended:  appendEffect("c"),
		typeElsewhere: func(context.Context, pgx.Tx, events.Envelope) error { applied.Add(1); return nil },
	}
	cfg := s.config(handlers)
	cfg.Routes[typeElsewhere] = events.Route{Topic: other, Source: testSource}

	good := []events.Envelope{event(t, "order-r", 1), event(t, "order-r", 3)}
	forgedSource := event(t, "order-r", 2)
	forgedSource.Source = "shipping"
	wrongTopic := envelope(t, typeElsewhere, "order-r", []byte(`{}`))
	s.produceEvents(good[0], forgedSource, wrongTopic, good[1])
	s.start(cfg)

	checkOnceInOrder(t, s.waitEffects(len(good), 20*time.Second), good)
	dead := readTopic(t, s.brokers, s.dlq, 2)
	for i, want := range []events.Envelope{forgedSource, wrongTopic} {
		if got := events.Header(dead[i], events.HeaderID); got != want.ID {
			t.Errorf("dead letter %d is event %s, want %s", i, got, want.ID)
		}
		if got := events.Header(dead[i], consumer.HeaderDLQReason); got != consumer.ReasonUnexpectedSource {
			t.Errorf("dead letter %d: reason %q, want %q", i, got, consumer.ReasonUnexpectedSource)
		}
	}
	if n := applied.Load(); n != 0 {
		t.Errorf("the event on the wrong topic was applied %d times", n)
	}
	var inInbox int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM processed_events WHERE event_id = ANY($1)`,
		[]string{forgedSource.ID, wrongTopic.ID}).Scan(&inInbox); err != nil || inInbox != 0 {
		t.Errorf("%d rejected events recorded in the inbox (%v)", inInbox, err)
	}
	reason := map[string]string{"group": s.group, "reason": consumer.ReasonUnexpectedSource}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", reason); got != 2 {
		t.Errorf("dead_lettered_total{reason=unexpected_source} = %v, want 2", got)
	}
}

func TestUnknownEventTypeIsSkipped(t *testing.T) {
	t.Parallel()
	s := newStack(t, events.Partitions)
	before, after := event(t, "order-u", 1), event(t, "order-u", 2)
	unknown := envelope(t, "test.SomethingNew", "order-u", []byte(`{}`))
	s.produceEvents(before, unknown, after)
	s.start(s.config(map[string]consumer.Handler{typeAppended: appendEffect("c")}))

	checkOnceInOrder(t, s.waitEffects(2, 20*time.Second), []events.Envelope{before, after})
	if got := metric(t, s.reg, "consumer_skipped_total", map[string]string{"group": s.group, "type": "test.SomethingNew"}); got != 1 {
		t.Errorf("skipped_total = %v, want 1", got)
	}
	var inInbox bool
	if err := s.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM processed_events WHERE event_id = $1)`, unknown.ID).Scan(&inInbox); err != nil {
		t.Fatal(err)
	}
	if inInbox {
		t.Error("skipped event recorded in the inbox")
	}
}

func TestDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	s := newStack(t, events.Partitions)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)

	// The handler of the terminated event reports its backend and waits
	// until the test has killed it.
	killed := event(t, "order-k", 1)
	pids := make(chan uint32, 1)
	resume := make(chan struct{})
	var first sync.Once
	s.start(s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			// Give up on a lock after 100 ms, as a service under a
			// lock_timeout would.
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '100ms'`); err != nil {
				return err
			}
			if e.ID == killed.ID {
				var wait bool
				first.Do(func() { wait = true })
				if wait {
					var pid uint32
					if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
						return err
					}
					pids <- pid
					<-resume
				}
			}
			return appendEffect("c")(ctx, tx, e)
		},
	}))
	group := map[string]string{"group": s.group}

	// 1. The effects table is locked for a while: lock_not_available.
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+s.schema+`.effects IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	locked := event(t, "order-l", 1)
	s.produceEvents(locked)
	// More failures than MaxAttempts (3): transient ones do not count.
	testenv.WaitFor(t, 20*time.Second, "retries while the table is locked", func() bool {
		return metric(t, s.reg, "consumer_retries_total", group) >= 5
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s.waitEffects(1, 20*time.Second)

	// 2. The consumer's connection is terminated mid-transaction.
	retries := metric(t, s.reg, "consumer_retries_total", group)
	s.produceEvents(killed)
	var pid uint32
	select {
	case pid = <-pids:
	case <-time.After(20 * time.Second):
		t.Fatal("handler of the event to kill never ran")
	}
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "backend gone", func() bool {
		var alive bool
		err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&alive)
		return err == nil && !alive
	})
	close(resume)

	checkOnceInOrder(t, s.waitEffects(2, 20*time.Second), []events.Envelope{locked, killed})
	if got := metric(t, s.reg, "consumer_retries_total", group); got <= retries {
		t.Errorf("no retry after the connection was terminated (retries_total %v)", got)
	}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", group); got != 0 {
		t.Errorf("dead_lettered_total = %v, want 0", got)
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	t.Parallel()
	handlers := map[string]consumer.Handler{typeAppended: appendEffect("c")}
	routes := events.Routes{typeAppended: {Topic: "t", Source: "s"}, "T": {Topic: "t", Source: "s"}}
	for name, cfg := range map[string]consumer.Config{
		"empty":          {},
		"no pool":        {Brokers: []string{"x:9092"}, Group: "g", Routes: routes, Handlers: handlers},
		"nil handler":    {Brokers: []string{"x:9092"}, Group: "g", Routes: routes, Handlers: map[string]consumer.Handler{"T": nil}},
		"no route":       {Brokers: []string{"x:9092"}, Group: "g", Routes: events.Routes{}, Handlers: handlers, Pool: &pgxpool.Pool{}},
		"saga has none":  {Brokers: []string{"x:9092"}, Group: "g", Handlers: handlers, Pool: &pgxpool.Pool{}},
		"negative batch": {Brokers: []string{"x:9092"}, Group: "g", Routes: routes, Handlers: handlers, Pool: &pgxpool.Pool{}, BatchSize: -1},
		"backoff upside": {Brokers: []string{"x:9092"}, Group: "g", Routes: routes, Handlers: handlers, MinBackoff: time.Second, MaxBackoff: time.Millisecond},
	} {
		if _, err := consumer.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	inner := &pgconn.PgError{Code: "23505", Message: "duplicate key"}
	err := fmt.Errorf("reserve stock: %w", consumer.Permanent(inner))
	var pgErr *pgconn.PgError
	if !errors.Is(err, consumer.ErrPermanent) || !errors.As(err, &pgErr) {
		t.Errorf("Permanent lost ErrPermanent or the wrapped error: %v", err)
	}
	if err.Error() != "reserve stock: "+inner.Error() {
		t.Errorf("error text %q", err.Error())
	}
	if consumer.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}

func randomSpanContext(t testing.TB) trace.SpanContext {
	t.Helper()
	var tid trace.TraceID
	var sid trace.SpanID
	if _, err := rand.Read(tid[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(sid[:]); err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
}

func TestInboxIsPrunedAfterRetention(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	ctx := context.Background()
	old, recent := event(t, "order-p", 1), event(t, "order-p", 2)
	if _, err := s.pool.Exec(ctx, `INSERT INTO processed_events (event_id, event_type, processed_at)
		VALUES ($1, 'X', now() - interval '8 days'), ($2, 'X', now() - interval '1 hour')`, old.ID, recent.ID); err != nil {
		t.Fatal(err)
	}
	cfg := s.config(map[string]consumer.Handler{typeAppended: appendEffect("c")})
	cfg.InboxRetention = 7 * 24 * time.Hour
	c, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := consumer.PruneInbox(ctx, c)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d rows (%v), want 1", n, err)
	}
	var left []string
	rows, _ := s.pool.Query(ctx, `SELECT event_id::text FROM processed_events`)
	left, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(left) != 1 || left[0] != recent.ID {
		t.Fatalf("left %v (%v), want only the recent event", left, err)
	}
}
