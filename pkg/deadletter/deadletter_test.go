package deadletter_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/deadletter"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// The test's own event types: one its handler always rejects, one it fails
// to apply until the test "fixes" it (a row in the fixed table).
const (
	typeRejected = "test.Rejected"
	typeFlaky    = "test.Flaky"
	testSource   = "deadletter-test"
)

// stack is one test's infrastructure: a schema with the inbox, a source
// topic, a real consumer (pkg/consumer) of it whose failures go to its
// group's dead-letter topic, and a producer.
type stack struct {
	t       testing.TB
	pool    *pgxpool.Pool
	brokers []string
	topic   string
	group   string
	dlq     string
	writer  *kafka.Writer
	reg     *prometheus.Registry
}

func newStack(t testing.TB, group string) *stack {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ddl := range []string{consumer.Schema, deadletter.Schema,
		`CREATE TABLE effects (event_id uuid NOT NULL, order_id text NOT NULL)`,
		`CREATE TABLE fixed (order_id text PRIMARY KEY)`} {
		if _, err := pool.Exec(ctx, ddl); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
	}
	brokers := testenv.Kafka(t)
	s := &stack{t: t, pool: pool, brokers: brokers, topic: testenv.Topics(t, brokers, 2, "dlsrc")[0], group: group,
		dlq: createDLQ(t, brokers, group), reg: prometheus.NewRegistry()}
	s.writer = broker.NewWriter(brokers)
	t.Cleanup(func() { _ = s.writer.Close() })
	return s
}

// createDLQ creates group's dead-letter topic, deleted when the test ends.
func createDLQ(t testing.TB, brokers []string, group string) string {
	t.Helper()
	dlq := events.DeadLetterTopic(group)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, brokers, events.Partitions, dlq); err != nil {
		t.Fatalf("create dead-letter topic: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := broker.DeleteTopics(ctx, brokers, dlq); err != nil {
			t.Logf("delete dead-letter topic: %v", err)
		}
	})
	return dlq
}

// run starts the consumer until the test ends.
func (s *stack) run() {
	s.t.Helper()
	apply := func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id) VALUES ($1, $2)`, e.ID, e.Subject)
		return err
	}
	c, err := consumer.New(consumer.Config{
		Brokers: s.brokers,
		Group:   s.group,
		Handlers: map[string]consumer.Handler{
			typeRejected: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
				return consumer.Permanent(fmt.Errorf("order %s rejected", e.Subject))
			},
			typeFlaky: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
				var ok bool
				if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM fixed WHERE order_id = $1)`, e.Subject).Scan(&ok); err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("order %s not fixed yet", e.Subject)
				}
				return apply(ctx, tx, e)
			},
		},
		Routes: events.Routes{
			typeRejected: {Topic: s.topic, Source: testSource},
			typeFlaky:    {Topic: s.topic, Source: testSource},
		},
		Pool:        s.pool,
		Registerer:  s.reg,
		MaxAttempts: 2,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  50 * time.Millisecond,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	s.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("consumer: %v", err)
		}
	})
}

// event is an event of type typ about order, with a trace context.
func event(t testing.TB, typ, order string) events.Envelope {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{
		ID: id.String(), Type: typ, SchemaVersion: 1, Source: testSource, Subject: order,
		Time: time.Now().UTC().Truncate(time.Microsecond), CorrelationID: order,
		TraceParent: fmt.Sprintf("00-%032x-%016x-01", id[:], id[8:]),
		Data:        []byte(fmt.Sprintf(`{"order_id":%q}`, order)),
	}
}

func (s *stack) produce(msgs ...kafka.Message) {
	s.t.Helper()
	produce(s.t, s.writer, msgs...)
}

// produce writes msgs one by one, each again while the broker says its
// error is temporary (a topic just created has no partition leaders for a
// moment).
func produce(t testing.TB, w deadletter.Publisher, msgs ...kafka.Message) {
	t.Helper()
	for _, m := range msgs {
		produceOne(t, w, m)
	}
}

func produceOne(t testing.TB, w deadletter.Publisher, m kafka.Message) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := w.WriteMessages(ctx, m)
		cancel()
		var kerr kafka.Error
		var werr kafka.WriteErrors
		if errors.As(err, &werr) {
			for _, e := range werr {
				if e != nil {
					err = e
					break
				}
			}
		}
		switch {
		case err == nil:
			return
		case errors.As(err, &kerr) && kerr.Temporary() && time.Now().Before(deadline):
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("produce: %v", err)
		}
	}
}

func (s *stack) produceEvents(envs ...events.Envelope) {
	s.t.Helper()
	msgs := make([]kafka.Message, len(envs))
	for i, e := range envs {
		msgs[i] = events.ToMessage(s.topic, e)
	}
	s.produce(msgs...)
}

// list is deadletter.List for the stack's group, which must return.
func (s *stack) list(f deadletter.Filter) []deadletter.Letter {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.Group = s.group
	ls, err := deadletter.List(ctx, s.brokers, f)
	if err != nil {
		s.t.Fatalf("List(%+v): %v", f, err)
	}
	return ls
}

// waitLetters waits until the group's dead-letter topic holds n letters.
func (s *stack) waitLetters(n int) []deadletter.Letter {
	s.t.Helper()
	var ls []deadletter.Letter
	testenv.WaitFor(s.t, 30*time.Second, fmt.Sprintf("%d dead letters", n), func() bool {
		ls = s.list(deadletter.Filter{})
		return len(ls) >= n
	})
	if len(ls) != n {
		s.t.Fatalf("%d dead letters, want %d: %+v", len(ls), n, ls)
	}
	return ls
}

func (s *stack) count(sql string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// metric is the value of a consumer counter for the stack's group and typ.
func (s *stack) metric(name, typ string) float64 {
	s.t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

func TestList(t *testing.T) {
	s := newStack(t, testenv.Name("dl"))
	s.run()
	start := time.Now().UTC()
	orderA, orderB := uuid.NewString(), uuid.NewString()
	s.produceEvents(event(t, typeRejected, orderA), event(t, typeFlaky, orderA), event(t, typeRejected, orderB))
	// A record without any dlq.* header, written to the topic by hand.
	s.produce(kafka.Message{Topic: s.dlq, Key: []byte("hand-written"), Value: []byte("?")})
	all := s.waitLetters(4)
	end := time.Now().UTC().Add(time.Second)

	var malformed deadletter.Letter
	for _, l := range all {
		if l.Position.Topic != s.dlq || l.Group != s.group {
			t.Errorf("letter %+v: topic or group", l)
		}
		if l.OrderID == "hand-written" {
			malformed = l
			continue
		}
		if len(l.Problems) > 0 || l.Original == nil || l.Original.Topic != s.topic || l.EventID == "" || l.TraceID == "" ||
			l.FailedAt.Before(start.Add(-time.Second)) || l.FailedAt.After(end) || l.Error == "" {
			t.Errorf("letter %+v", l)
		}
	}
	if malformed.Position.Topic == "" || len(malformed.Problems) == 0 || malformed.Reason != "" || string(malformed.Value) != "?" {
		t.Fatalf("malformed record listed as %+v", malformed)
	}

	tests := []struct {
		name string
		f    deadletter.Filter
		want int
	}{
		{"all", deadletter.Filter{}, 4},
		{"type", deadletter.Filter{Type: typeRejected}, 2},
		{"reason handler", deadletter.Filter{Reason: consumer.ReasonHandler}, 2},
		{"reason max_attempts", deadletter.Filter{Reason: consumer.ReasonMaxAttempts}, 1},
		{"order", deadletter.Filter{OrderID: orderA}, 2},
		{"order by key", deadletter.Filter{OrderID: "hand-written"}, 1},
		{"type and order", deadletter.Filter{Type: typeRejected, OrderID: orderB}, 1},
		{"since", deadletter.Filter{Since: start.Add(-time.Second)}, 3}, // not the one without failed_at
		{"since later", deadletter.Filter{Since: end}, 0},
		{"until", deadletter.Filter{Until: end}, 3},
		{"until earlier", deadletter.Filter{Until: start.Add(-time.Minute)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.list(tt.f); len(got) != tt.want {
				t.Fatalf("%d letters, want %d: %+v", len(got), tt.want, got)
			}
		})
	}

	t.Run("every dead-letter topic when no group is named", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		ls, err := deadletter.List(ctx, s.brokers, deadletter.Filter{OrderID: orderA})
		if err != nil || len(ls) != 2 {
			t.Fatalf("List = %d letters, %v; want 2", len(ls), err)
		}
	})
	t.Run("unknown group", func(t *testing.T) {
		_, err := deadletter.List(context.Background(), s.brokers, deadletter.Filter{Group: testenv.Name("nogroup")})
		if !errors.Is(err, deadletter.ErrNotFound) {
			t.Fatalf("List = %v, want ErrNotFound", err)
		}
	})
	t.Run("get", func(t *testing.T) {
		l, err := deadletter.Get(context.Background(), s.brokers, all[0].Position)
		if err != nil || l.Position != all[0].Position || l.EventID != all[0].EventID {
			t.Fatalf("Get = %+v, %v; want %+v", l, err, all[0])
		}
		for _, p := range []deadletter.Position{
			{Topic: s.dlq, Partition: 0, Offset: 1_000_000},
			{Topic: s.dlq, Partition: events.Partitions, Offset: 0},
			{Topic: events.DeadLetterTopic(testenv.Name("nogroup")), Partition: 0, Offset: 0},
		} {
			if _, err := deadletter.Get(context.Background(), s.brokers, p); !errors.Is(err, deadletter.ErrNotFound) {
				t.Errorf("Get(%s) = %v, want ErrNotFound", p, err)
			}
		}
		if _, err := deadletter.Get(context.Background(), s.brokers, deadletter.Position{Topic: s.topic}); !errors.Is(err, deadletter.ErrInvalid) {
			t.Errorf("Get in a topic that is no dead-letter topic: %v, want ErrInvalid", err)
		}
	})
	t.Run("malformed letters are not replayed", func(t *testing.T) {
		err := deadletter.Replay(context.Background(), s.writer, all...)
		if !errors.Is(err, deadletter.ErrNotReplayable) {
			t.Fatalf("Replay = %v, want ErrNotReplayable", err)
		}
		if n := len(s.list(deadletter.Filter{})); n != 4 {
			t.Fatalf("%d letters after a refused replay, want 4 (nothing written)", n)
		}
	})
}

func TestListReturnsAtTheEnd(t *testing.T) {
	s := newStack(t, testenv.Name("dlend"))
	// An empty topic: nothing to wait for.
	if ls := s.list(deadletter.Filter{}); len(ls) != 0 {
		t.Fatalf("empty topic: %+v", ls)
	}
	// Letters keep arriving while List reads: it stops at the end the
	// partitions had when it began, and a second List sees more.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			m := kafka.Message{Topic: s.dlq, Key: []byte(fmt.Sprintf("k%d", i)), Headers: []kafka.Header{
				{Key: consumer.HeaderDLQReason, Value: []byte(consumer.ReasonDecode)},
			}}
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			_ = s.writer.WriteMessages(wctx, m)
			wcancel()
		}
	})
	defer func() { cancel(); wg.Wait() }()
	testenv.WaitFor(t, 30*time.Second, "letters to arrive", func() bool { return len(s.list(deadletter.Filter{})) > 0 })
	first := len(s.list(deadletter.Filter{}))
	testenv.WaitFor(t, 30*time.Second, "more letters", func() bool { return len(s.list(deadletter.Filter{})) > first })
}

func TestReplay(t *testing.T) {
	s := newStack(t, testenv.Name("dlrp"))
	s.run()
	order := uuid.NewString()
	flaky := event(t, typeFlaky, order)
	s.produceEvents(flaky)
	letter := s.waitLetters(1)[0]
	if letter.Reason != consumer.ReasonMaxAttempts || letter.EventID != flaky.ID || letter.ReplayCount != 0 {
		t.Fatalf("letter %+v", letter)
	}
	original := findMessage(t, s.brokers, s.topic, func(m kafka.Message) bool { return events.Header(m, events.HeaderID) == flaky.ID })

	// Still broken: the replay is dead-lettered again, with fresh dlq.*
	// headers and its replay count.
	if err := deadletter.Replay(context.Background(), s.writer, letter); err != nil {
		t.Fatal(err)
	}
	again := s.waitLetters(2)[1]
	if again.ReplayCount != 1 || again.ReplayedFrom != letter.Position.String() || again.EventID != flaky.ID ||
		again.Reason != consumer.ReasonMaxAttempts || len(again.Problems) > 0 {
		t.Fatalf("dead-lettered replay %+v", again)
	}
	for _, k := range []string{consumer.HeaderDLQReason, consumer.HeaderDLQFailedAt, deadletter.HeaderReplayCount} {
		if n := countHeader(again.Headers, k); n != 1 {
			t.Errorf("header %s %d times in the dead-lettered replay", k, n)
		}
	}

	// Fixed: the replay of the second letter is applied, once.
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO fixed VALUES ($1)`, order); err != nil {
		t.Fatal(err)
	}
	if err := deadletter.Replay(context.Background(), s.writer, again); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the replay to be applied", func() bool {
		return s.count(`SELECT count(*) FROM effects WHERE event_id = $1`, flaky.ID) == 1
	})
	replayed := findMessage(t, s.brokers, s.topic, func(m kafka.Message) bool {
		return events.Header(m, deadletter.HeaderReplayedFrom) == again.Position.String()
	})
	if string(replayed.Key) != string(original.Key) || string(replayed.Value) != string(original.Value) || replayed.Partition != original.Partition {
		t.Fatalf("replayed %s/%d %q %q, original %s/%d %q %q", replayed.Topic, replayed.Partition, replayed.Key, replayed.Value,
			original.Topic, original.Partition, original.Key, original.Value)
	}
	for _, h := range original.Headers {
		if got := events.Header(replayed, h.Key); got != string(h.Value) {
			t.Errorf("replayed header %s = %q, original %q", h.Key, got, h.Value)
		}
	}
	if events.Header(replayed, events.HeaderTraceParent) != flaky.TraceParent || events.Header(replayed, deadletter.HeaderReplayCount) != "2" {
		t.Errorf("replayed headers %v", replayed.Headers)
	}
	for _, h := range replayed.Headers {
		if strings.HasPrefix(h.Key, "dlq.") {
			t.Errorf("replayed with header %s", h.Key)
		}
	}

	// The same letters again: the inbox skips them, nothing changes.
	dups := s.metric("consumer_duplicates_total", typeFlaky)
	if err := deadletter.Replay(context.Background(), s.writer, letter, again); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "both replays to be skipped as duplicates", func() bool {
		return s.metric("consumer_duplicates_total", typeFlaky) >= dups+2
	})
	if n := s.count(`SELECT count(*) FROM effects WHERE event_id = $1`, flaky.ID); n != 1 {
		t.Fatalf("%d effects after replaying twice, want 1", n)
	}
	if n := len(s.list(deadletter.Filter{})); n != 2 {
		t.Fatalf("%d letters, want 2", n)
	}
}

// findMessage scans topic for the last message that matches.
func findMessage(t testing.TB, brokers []string, topic string, match func(kafka.Message) bool) kafka.Message {
	t.Helper()
	var found kafka.Message
	testenv.WaitFor(t, 30*time.Second, "message on "+topic, func() bool {
		// Every partition the topic has: a dead-letter topic has
		// events.Partitions, a source topic of these tests 2.
		conn, err := kafka.Dial("tcp", brokers[0])
		if err != nil {
			return false
		}
		parts, err := conn.ReadPartitions(topic)
		_ = conn.Close()
		if err != nil {
			return false
		}
		for _, part := range parts {
			p := part.ID
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					break
				}
				if match(m) {
					found = m
				}
			}
			cancel()
			_ = r.Close()
		}
		return found.Topic != ""
	})
	return found
}

func countHeader(hs []kafka.Header, key string) int {
	n := 0
	for _, h := range hs {
		if h.Key == key {
			n++
		}
	}
	return n
}

func TestWatch(t *testing.T) {
	base := testenv.Name("dlw")
	s := newStack(t, base+"_a")
	s.run()
	order := uuid.NewString()
	s.produceEvents(event(t, typeRejected, order))
	s.waitLetters(1)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var mu sync.Mutex
	seen := map[deadletter.Position]int{}
	record := deadletter.Recorder(s.pool)
	go func() {
		done <- deadletter.Watch(ctx, deadletter.WatchConfig{
			Brokers: s.brokers,
			Group:   base + ".dlq-watch",
			Match:   func(topic string) bool { return strings.HasPrefix(topic, base) },
			Refresh: 500 * time.Millisecond,
			Handle: func(ctx context.Context, l deadletter.Letter) error {
				mu.Lock()
				seen[l.Position]++
				mu.Unlock()
				return record(ctx, l)
			},
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	oid := uuid.MustParse(order)
	waitRecorded := func(id uuid.UUID, n int) []deadletter.Recorded {
		t.Helper()
		var rs []deadletter.Recorded
		testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("%d recorded letters of %s", n, id), func() bool {
			var err error
			rs, err = deadletter.ForOrder(context.Background(), s.pool, id)
			if err != nil {
				t.Fatal(err)
			}
			return len(rs) >= n
		})
		return rs
	}
	rs := waitRecorded(oid, 1)
	if rs[0].Topic != s.dlq || rs[0].Group != s.group || rs[0].EventType != typeRejected || rs[0].Reason != consumer.ReasonHandler ||
		rs[0].FailedAt == nil || !strings.Contains(rs[0].Error, "rejected") {
		t.Fatalf("recorded %+v", rs[0])
	}

	// A group that starts later creates its dead-letter topic later.
	later := base + "_b"
	laterDLQ := createDLQ(t, s.brokers, later)
	other := uuid.NewString()
	m := events.ToMessage(s.topic, event(t, typeFlaky, other))
	m.Topic = laterDLQ
	m.Headers = append(m.Headers,
		kafka.Header{Key: consumer.HeaderDLQReason, Value: []byte(consumer.ReasonMaxAttempts)},
		kafka.Header{Key: consumer.HeaderDLQConsumerGroup, Value: []byte(later)},
		kafka.Header{Key: consumer.HeaderDLQOriginalTopic, Value: []byte(s.topic)},
	)
	s.produce(m, kafka.Message{Topic: laterDLQ, Key: []byte("not-an-order")})
	if rs := waitRecorded(uuid.MustParse(other), 1); rs[0].Topic != laterDLQ || rs[0].Group != later || rs[0].FailedAt != nil {
		t.Fatalf("recorded %+v", rs[0])
	}
	if n := s.count(`SELECT count(*) FROM order_dead_letters`); n != 2 {
		t.Fatalf("%d recorded letters, want 2 (the one about no order is passed over)", n)
	}

	// A letter whose headers PostgreSQL's text cannot hold as sent (NUL,
	// invalid UTF-8: the consumer copies a producer's headers as they
	// were) is recorded with U+FFFD for them, not retried forever with
	// every letter after it waiting (FuzzRecord's seeds found it).
	poisoned := uuid.NewString()
	p := events.ToMessage(s.topic, event(t, typeRejected, poisoned))
	p.Topic = laterDLQ
	for i, h := range p.Headers {
		switch h.Key {
		case events.HeaderID:
			p.Headers[i].Value = append(h.Value, 0)
		case events.HeaderType:
			p.Headers[i].Value = []byte("Rejected\xff\x00")
		}
	}
	p.Headers = append(p.Headers,
		kafka.Header{Key: consumer.HeaderDLQReason, Value: []byte(consumer.ReasonDecode)},
		kafka.Header{Key: consumer.HeaderDLQError, Value: []byte("decode: \xfe\x00")},
		kafka.Header{Key: consumer.HeaderDLQConsumerGroup, Value: []byte(later)},
		kafka.Header{Key: consumer.HeaderDLQOriginalTopic, Value: []byte(s.topic)},
	)
	s.produce(p)
	if rs := waitRecorded(uuid.MustParse(poisoned), 1); rs[0].EventType != "Rejected\uFFFD\uFFFD" || rs[0].Error != "decode: \uFFFD\uFFFD" {
		t.Fatalf("recorded %+v", rs[0])
	}

	// Recording a letter again changes nothing.
	l := deadletter.Letter{Position: rs[0].Position(), OrderID: order}
	for range 2 {
		if ok, err := deadletter.Record(context.Background(), s.pool, l); !ok || err != nil {
			t.Fatalf("Record = %v, %v", ok, err)
		}
	}
	if got := waitRecorded(oid, 1); len(got) != 1 {
		t.Fatalf("recorded again: %+v", got)
	}
	testenv.WaitFor(t, 30*time.Second, "the four letters handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 4
	})
}

// TestCopies: the consumer writes a dead letter before it commits the
// message's offset, so a crash, a broker restart or a rebalance in between
// dead-letters the message again. Both copies are one letter: List shows it
// once with Copies 2, Record keeps one row of it, a replay of what List
// returned writes it once. Records that do not say where they came from are
// never taken for copies.
func TestCopies(t *testing.T) {
	s := newStack(t, testenv.Name("dlcp"))
	s.run()
	order := uuid.NewString()
	rejected := event(t, typeRejected, order)
	s.produceEvents(rejected)
	first := s.waitLetters(1)[0]
	if first.Copies != 1 || first.Original == nil {
		t.Fatalf("letter %+v", first)
	}

	// The letter again, as the consumer writes it after a redelivery: the
	// same message and dlq.original.* headers, a later dlq.failed.at.
	raw := findMessage(t, s.brokers, s.dlq, func(m kafka.Message) bool { return events.Header(m, events.HeaderID) == rejected.ID })
	again := kafka.Message{Topic: s.dlq, Key: raw.Key, Value: raw.Value}
	for _, h := range raw.Headers {
		if h.Key == consumer.HeaderDLQFailedAt {
			h.Value = []byte(first.FailedAt.Add(time.Second).Format(time.RFC3339Nano))
		}
		again.Headers = append(again.Headers, h)
	}
	s.produce(again)
	var ls []deadletter.Letter
	testenv.WaitFor(t, 30*time.Second, "the copy listed", func() bool {
		ls = s.list(deadletter.Filter{})
		return len(ls) == 1 && ls[0].Copies == 2
	})
	l := ls[0]
	if l.Position != first.Position || len(l.Duplicates) != 1 || l.Duplicates[0] == first.Position || !l.FailedAt.Equal(first.FailedAt) {
		t.Fatalf("listed %+v, first copy at %s", l, first.Position)
	}
	o1, ok1 := l.Origin()
	copyOf, err := deadletter.Get(context.Background(), s.brokers, l.Duplicates[0])
	if err != nil {
		t.Fatal(err)
	}
	if o2, ok2 := copyOf.Origin(); !ok1 || !ok2 || o1 != o2 || o1.Group != s.group || o1.Position != *first.Original {
		t.Fatalf("origins %+v (%v) and %+v (%v), want %s of %s", o1, ok1, o2, ok2, first.Original, s.group)
	}

	// Recorded once, whichever copy comes first and however often each is
	// recorded.
	for _, x := range []deadletter.Letter{copyOf, first, copyOf, first} {
		if ok, err := deadletter.Record(context.Background(), s.pool, x); !ok || err != nil {
			t.Fatalf("Record(%s) = %v, %v", x.Position, ok, err)
		}
	}
	rs, err := deadletter.ForOrder(context.Background(), s.pool, uuid.MustParse(order))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Copies != 2 || rs[0].Position() != copyOf.Position {
		t.Fatalf("recorded %+v, want one row with 2 copies at %s", rs, copyOf.Position)
	}

	// Replayed once.
	if err := deadletter.Replay(context.Background(), s.writer, ls...); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the replay dead-lettered again", func() bool {
		ls = s.list(deadletter.Filter{})
		return len(ls) == 2
	})
	if ls[1].ReplayCount != 1 || ls[1].Copies != 1 || ls[1].ReplayedFrom != first.Position.String() {
		t.Fatalf("after the replay %+v", ls[1])
	}
	replays := 0
	for p := range 2 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, Topic: s.topic, Partition: p, MaxWait: 100 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				break
			}
			if events.Header(m, deadletter.HeaderReplayedFrom) != "" {
				replays++
			}
		}
		cancel()
		_ = r.Close()
	}
	if replays != 1 {
		t.Fatalf("%d replays on %s, want 1", replays, s.topic)
	}

	// Two records with no dlq.original.* headers are two letters, recorded
	// as two.
	bare := uuid.NewString()
	s.produce(kafka.Message{Topic: s.dlq, Key: []byte(bare)}, kafka.Message{Topic: s.dlq, Key: []byte(bare)})
	var bares []deadletter.Letter
	testenv.WaitFor(t, 30*time.Second, "two letters without origin", func() bool {
		bares = s.list(deadletter.Filter{OrderID: bare})
		return len(bares) == 2
	})
	for _, b := range bares {
		if _, ok := b.Origin(); ok || b.Copies != 1 {
			t.Fatalf("letter without origin %+v", b)
		}
		if _, err := deadletter.Record(context.Background(), s.pool, b); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.count(`SELECT count(*) FROM order_dead_letters WHERE order_id = $1`, bare); n != 2 {
		t.Fatalf("%d rows for the letters without origin, want 2", n)
	}
}
