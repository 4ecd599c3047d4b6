package outbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/testenv"
)

func TestConcurrentWritersArePublishedOnceInCommitOrderPerKey(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topics(t, brokers, 3, "outbox")[0]
	// A small batch makes the relay loop over full batches while writers
	// are still committing.
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: newWriter(t, brokers), BatchSize: 64, PollInterval: 200 * time.Millisecond})

	rolledBack := load(t, pool, topic, 20, 50, 10)

	testenv.WaitFor(t, 30*time.Second, "outbox drained", func() bool { return pendingRows(t, pool) == 0 })
	want := committed(t, pool)
	msgs := readTopic(t, brokers, topic, len(want), 10*time.Second)
	dups := checkPublished(t, msgs, want, rolledBack)
	t.Logf("%d committed, %d rolled back, %d published, %d duplicates", len(want), len(rolledBack), len(msgs), dups)
	if len(rolledBack) == 0 {
		t.Fatal("no transaction was rolled back: the test did not exercise rollbacks")
	}
}

func TestTwoRelaysKeepKeyOrderAcrossHandover(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topics(t, brokers, 3, "outbox")[0]
	cfg := outbox.RelayConfig{Pool: pool, BatchSize: 32, PollInterval: 100 * time.Millisecond}

	cfg.Publisher = newWriter(t, brokers)
	stopFirst := startRelay(t, cfg)
	// Only the first relay runs yet, so it is the one that leads.
	writeEvents(t, context.Background(), pool, topic, newEvent(t, "warm-up"))
	testenv.WaitFor(t, 10*time.Second, "warm-up event published", func() bool { return pendingRows(t, pool) == 0 })
	if _, err := pool.Exec(context.Background(), `DELETE FROM seqs`); err != nil {
		t.Fatal(err)
	}
	cfg.Publisher = newWriter(t, brokers)
	startRelay(t, cfg)

	// Stop the leader half-way: the standby must take over the pending rows.
	loaded := make(chan struct{})
	handedOver := make(chan struct{})
	go func() {
		defer close(handedOver)
		for {
			var n int
			_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM seqs`).Scan(&n)
			select {
			case <-loaded:
			default:
				if n < 180 {
					time.Sleep(10 * time.Millisecond)
					continue
				}
			}
			stopFirst()
			return
		}
	}()
	rolledBack := load(t, pool, topic, 10, 40, 6)
	close(loaded)
	<-handedOver

	testenv.WaitFor(t, 30*time.Second, "outbox drained", func() bool { return pendingRows(t, pool) == 0 })
	want := committed(t, pool)
	msgs := readTopic(t, brokers, topic, len(want)+1, 10*time.Second)
	var loadMsgs []kafka.Message
	for _, m := range msgs {
		if string(m.Key) != "warm-up" {
			loadMsgs = append(loadMsgs, m)
		}
	}
	dups := checkPublished(t, loadMsgs, want, rolledBack)
	t.Logf("%d committed, %d published, %d duplicates", len(want), len(loadMsgs), dups)
}

// crashAfterPublish publishes, then makes the relay stop as if its process
// died before deleting the rows.
type crashAfterPublish struct {
	outbox.Publisher
	crash func()
}

func (p crashAfterPublish) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if err := p.Publisher.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	p.crash()
	return errors.New("injected crash after publish")
}

func TestCrashBetweenPublishAndDeleteRepublishes(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := readyTopic(t, brokers)
	ctx := context.Background()
	const n = 30
	var es []events.Envelope
	for i := range n {
		es = append(es, newEvent(t, string(rune('a'+i%5))))
	}
	writeEvents(t, ctx, pool, topic, es...)
	w := newWriter(t, brokers)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	relay := outbox.NewRelay(outbox.RelayConfig{Pool: pool, Publisher: crashAfterPublish{w, cancel}, Logger: testLogger(t), PollInterval: 100 * time.Millisecond})
	if err := relay.Run(rctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := len(readTopic(t, brokers, topic, n, 10*time.Second)); got != n {
		t.Fatalf("%d messages after the first publish, want %d", got, n)
	}
	if got := pendingRows(t, pool); got != n {
		t.Fatalf("%d rows pending after the crash, want all %d", got, n)
	}

	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: w, PollInterval: 100 * time.Millisecond})
	testenv.WaitFor(t, 10*time.Second, "outbox drained", func() bool { return pendingRows(t, pool) == 0 })
	msgs := readTopic(t, brokers, topic, 2*n, 10*time.Second)
	if len(msgs) != 2*n {
		t.Fatalf("%d messages on the topic, want %d: each event twice", len(msgs), 2*n)
	}
	count := map[string]int{}
	for _, m := range msgs {
		count[events.Header(m, events.HeaderID)]++
	}
	for _, e := range es {
		if count[e.ID] != 2 {
			t.Errorf("event %s published %d times, want 2", e.ID, count[e.ID])
		}
	}
}

// stopAfterPublish stops the relay right after a successful publish (a
// freshly created topic may refuse the first attempts).
type stopAfterPublish struct {
	outbox.Publisher
	stop func()
}

func (p stopAfterPublish) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	err := p.Publisher.WriteMessages(ctx, msgs...)
	if err == nil {
		p.stop()
	}
	return err
}

func TestStopAfterPublishStillDeletes(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topics(t, brokers, 3, "outbox")[0]
	ctx := context.Background()
	writeEvents(t, ctx, pool, topic, newEvent(t, "a"), newEvent(t, "b"))

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	relay := outbox.NewRelay(outbox.RelayConfig{Pool: pool, Publisher: stopAfterPublish{newWriter(t, brokers), cancel}, Logger: testLogger(t)})
	if err := relay.Run(rctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	// A graceful stop finishes the delete, sparing consumers the duplicates.
	if got := pendingRows(t, pool); got != 0 {
		t.Fatalf("%d rows pending after a stop that followed a successful publish, want 0", got)
	}
}

func TestKafkaOutageKeepsRowsUntilBrokerReturns(t *testing.T) {
	t.Parallel()
	k := testenv.StartPrivateKafka(t)
	topic := testenv.Topics(t, k.Brokers(), 3, "outbox")[0]
	pool := setup(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: newWriter(t, k.Brokers()), Registerer: reg, PollInterval: 100 * time.Millisecond})

	writeEvents(t, ctx, pool, topic, newEvent(t, "warm-up"))
	testenv.WaitFor(t, 20*time.Second, "warm-up event published", func() bool { return pendingRows(t, pool) == 0 })

	k.Stop()
	errorsBefore := metricValue(t, reg, "outbox_publish_errors_total")
	const n = 20
	for i := range n {
		writeEvents(t, ctx, pool, topic, newEvent(t, string(rune('a'+i%4))))
	}
	testenv.WaitFor(t, 20*time.Second, "publish errors while Kafka is down", func() bool {
		return metricValue(t, reg, "outbox_publish_errors_total") >= errorsBefore+2
	})
	if got := pendingRows(t, pool); got != n {
		t.Fatalf("%d rows pending while Kafka is down, want %d", got, n)
	}
	testenv.WaitFor(t, 10*time.Second, "pending gauge", func() bool {
		return metricValue(t, reg, "outbox_pending_rows") == n && metricValue(t, reg, "outbox_oldest_pending_age_seconds") > 0
	})

	k.Start()
	testenv.WaitFor(t, 40*time.Second, "outbox drained after Kafka returned", func() bool { return pendingRows(t, pool) == 0 })
	msgs := readTopic(t, k.Brokers(), topic, n+1, 10*time.Second)
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[string(m.Key)+"/"+events.Header(m, events.HeaderID)] = true
	}
	if len(seen) != n+1 {
		t.Fatalf("%d distinct events on the topic, want %d", len(seen), n+1)
	}
	if got := metricValue(t, reg, "outbox_published_total"); got < n+1 {
		t.Fatalf("outbox_published_total = %v, want >= %d", got, n+1)
	}
	testenv.WaitFor(t, 10*time.Second, "pending gauge back to 0", func() bool {
		return metricValue(t, reg, "outbox_pending_rows") == 0
	})
}

func histogramCount(t testing.TB, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// metricValue sums the samples of the named counter or gauge.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestPublishSpanContinuesTheWritersTrace(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topics(t, brokers, 3, "outbox")[0]
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	ctx, span := tp.Tracer("test").Start(context.Background(), "place order")
	e := newEvent(t, "order-1")
	writeEvents(t, ctx, pool, topic, e)
	span.End()
	writer := span.SpanContext()

	var stored string
	if err := pool.QueryRow(ctx, `SELECT envelope->>'traceparent' FROM outbox`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if want := "00-" + writer.TraceID().String() + "-" + writer.SpanID().String() + "-01"; stored != want {
		t.Fatalf("stored traceparent %q, want %q", stored, want)
	}

	reg := prometheus.NewRegistry()
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: newWriter(t, brokers), TracerProvider: tp, Registerer: reg})
	msgs := readTopic(t, brokers, topic, 1, 10*time.Second)
	got, err := events.FromMessage(msgs[0])
	if err != nil {
		t.Fatalf("decode published message: %v", err)
	}
	if got.ID != e.ID || string(msgs[0].Key) != e.Subject {
		t.Fatalf("published event %s key %q, want %s key %q", got.ID, msgs[0].Key, e.ID, e.Subject)
	}

	// The message carries the span of the attempt that succeeded; a fresh
	// topic may have refused earlier attempts, whose spans record the error.
	header := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{
		"traceparent": events.Header(msgs[0], events.HeaderTraceParent),
	})
	sc := trace.SpanContextFromContext(header)
	if sc.TraceID() != writer.TraceID() {
		t.Fatalf("message traceparent %q, want trace %s", events.Header(msgs[0], events.HeaderTraceParent), writer.TraceID())
	}
	var producer sdktrace.ReadOnlySpan
	testenv.WaitFor(t, 5*time.Second, "publish span ended", func() bool {
		for _, s := range sr.Ended() {
			if s.SpanContext().SpanID() == sc.SpanID() {
				producer = s
				return true
			}
		}
		return false
	})
	if producer.Name() != topic+" publish" || producer.SpanKind() != trace.SpanKindProducer {
		t.Errorf("message's span is %q of kind %v, want %q of kind producer", producer.Name(), producer.SpanKind(), topic+" publish")
	}
	if producer.Status().Code == codes.Error {
		t.Errorf("successful publish span has status %v", producer.Status())
	}
	if producer.Parent().SpanID() != writer.SpanID() || producer.SpanContext().TraceID() != writer.TraceID() {
		t.Errorf("publish span parent %v, want the writer's span %v", producer.Parent(), writer)
	}
	attrs := map[attribute.Key]string{}
	for _, a := range producer.Attributes() {
		attrs[a.Key] = a.Value.Emit()
	}
	for k, v := range map[attribute.Key]string{
		"messaging.system":           "kafka",
		"messaging.destination.name": topic,
		"messaging.operation.type":   "send",
		"messaging.operation.name":   "publish",
		"messaging.message.id":       e.ID,
		"order.id":                   "order-1",
	} {
		if attrs[k] != v {
			t.Errorf("publish span attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	for _, s := range sr.Ended() {
		if s.Name() == topic+" publish" && s.SpanContext().SpanID() != sc.SpanID() && s.Status().Code != codes.Error {
			t.Errorf("publish span %s of a failed attempt has status %v, want error", s.SpanContext().SpanID(), s.Status())
		}
	}
	if n := histogramCount(t, reg, "outbox_publish_duration_seconds"); n < 1 {
		t.Errorf("outbox_publish_duration_seconds counted %d batches, want at least 1", n)
	}
}

func TestNotifyWakesRelayBeforePoll(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topics(t, brokers, 3, "outbox")[0]
	ctx := context.Background()
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: newWriter(t, brokers), PollInterval: time.Minute})

	// The first event may be found by the relay's first round; by the time
	// it is published the relay is waiting, so only a notification can bring
	// the second one out before the minute-long poll.
	writeEvents(t, ctx, pool, topic, newEvent(t, "first"))
	testenv.WaitFor(t, 10*time.Second, "first event published", func() bool { return pendingRows(t, pool) == 0 })
	start := time.Now()
	writeEvents(t, ctx, pool, topic, newEvent(t, "second"))
	testenv.WaitFor(t, 10*time.Second, "second event published", func() bool { return pendingRows(t, pool) == 0 })
	t.Logf("second event published and deleted %s after the write began", time.Since(start))
	readTopic(t, brokers, topic, 2, 10*time.Second)
}

func TestRelayRecoversFromLostConnection(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Topics(t, brokers, 3, "outbox")[0]
	ctx := context.Background()
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: newWriter(t, brokers), PollInterval: 100 * time.Millisecond})
	writeEvents(t, ctx, pool, topic, newEvent(t, "before"))
	testenv.WaitFor(t, 10*time.Second, "first event published", func() bool { return pendingRows(t, pool) == 0 })

	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	// The leader is the backend holding the schema's session advisory lock.
	var killed int
	err := pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		  AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('outbox_' || $1, 0)`, schema).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminate the leader's connection: %d terminated, %v", killed, err)
	}

	writeEvents(t, ctx, pool, topic, newEvent(t, "after"))
	testenv.WaitFor(t, 10*time.Second, "event after reconnect published", func() bool { return pendingRows(t, pool) == 0 })
	readTopic(t, brokers, topic, 2, 10*time.Second)
}

func TestWriteNotifiesOncePerTransaction(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	listener, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn := listener.Hijack()
	defer conn.Close(ctx)
	channel := pgx.Identifier{"outbox_" + schema}.Sanitize()
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}

	writeEvents(t, ctx, pool, "topic", newEvent(t, "a"), newEvent(t, "a"), newEvent(t, "b"))
	if _, err := pool.Exec(ctx, "NOTIFY "+channel+", 'marker'"); err != nil {
		t.Fatal(err)
	}
	// Notifications arrive in commit order: after the outbox transaction's
	// one notification comes the marker.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for i, want := range []string{"", "marker"} {
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("notification %d: %v", i, err)
		}
		if n.Payload != want {
			t.Fatalf("notification %d has payload %q, want %q: one NOTIFY per transaction", i, n.Payload, want)
		}
	}
	if got := pendingRows(t, pool); got != 3 {
		t.Fatalf("%d rows, want 3", got)
	}
}

func TestWriteRejectsMalformedEvents(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	e := newEvent(t, "")
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return outbox.Write(ctx, tx, "topic", e) })
	if !errors.Is(err, events.ErrMalformed) {
		t.Fatalf("write of an event without subject: %v, want ErrMalformed", err)
	}
	good := newEvent(t, "a")
	writeEvents(t, ctx, pool, "topic", good)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return outbox.Write(ctx, tx, "topic", good) })
	if err == nil {
		t.Fatal("second write of the same event id succeeded, want a unique violation")
	}
}

// Relays in one process may share a registry: the second one reuses the
// first one's collectors instead of failing to register.
func TestRelaysShareARegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	outbox.NewRelay(outbox.RelayConfig{Registerer: reg})
	outbox.NewRelay(outbox.RelayConfig{Registerer: reg})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	if len(mfs) != 4 { // the counter by topic has no series yet
		t.Fatalf("%d metric families, want 4", len(mfs))
	}
}
