package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// keysOn returns n keys that the producer (kafka.Hash, as broker.NewWriter)
// puts on partition p of a topic of partitions partitions.
func keysOn(t testing.TB, p, partitions, n int) []string {
	t.Helper()
	all := make([]int, partitions)
	for i := range all {
		all[i] = i
	}
	var keys []string
	for i := 0; len(keys) < n; i++ {
		if i > 100_000 {
			t.Fatalf("no %d keys for partition %d", n, p)
		}
		k := fmt.Sprintf("order-p%d-%d", p, i)
		if (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(k)}, all...) == p {
			keys = append(keys, k)
		}
	}
	return keys
}

// A transient failure on one partition stalls that partition only: a
// message produced later on another partition is applied while the failing
// one is still being retried, and once the failure ends the stalled
// partition's messages are applied in order, none lost, their offsets
// committed.
func TestTransientFailureStallsOnlyItsPartition(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	a, b := keysOn(t, 0, 2, 1)[0], keysOn(t, 1, 2, 1)[0]
	stuck := event(t, a, 1)
	behind := []events.Envelope{event(t, a, 2), event(t, a, 3)}
	// Behind the stuck event, among its partition's messages, one to
	// dead-letter and one to skip: the lane takes them in their turn.
	undecodable := kafka.Message{Key: []byte(a), Value: []byte(`{"key":"no headers"}`)}
	unhandled := envelope(t, "test.SomethingNew", a, []byte(`{}`))
	s.produce(events.ToMessage(s.topic, stuck), events.ToMessage(s.topic, behind[0]), undecodable,
		events.ToMessage(s.topic, unhandled), events.ToMessage(s.topic, behind[1]))

	released := make(chan struct{})
	var attempts atomic.Int32
	h := appendEffect("first")
	cfg := s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			if e.ID == stuck.ID {
				attempts.Add(1)
				select {
				case <-released:
				default:
					return consumer.Transient(errors.New("mail server says 451, try later"))
				}
			}
			return h(ctx, tx, e)
		},
	})
	stop := s.start(cfg)
	group := map[string]string{"group": s.group}
	testenv.WaitFor(t, 20*time.Second, "the stuck event's retries", func() bool { return attempts.Load() >= 2 })
	if got := metric(t, s.reg, "consumer_parked_partitions", group); got != 1 {
		t.Errorf("parked_partitions = %v while one partition is failing, want 1", got)
	}

	// Produced only now, on the other partition: applied while the stuck
	// event still fails.
	others := []events.Envelope{event(t, b, 1), event(t, b, 2), event(t, b, 3)}
	s.produceEvents(others...)
	effs := s.waitEffects(len(others), 20*time.Second)
	before := attempts.Load()
	checkOnceInOrder(t, effs, others)
	testenv.WaitFor(t, 20*time.Second, "the stuck event still retried after the other partition's effects", func() bool {
		return attempts.Load() > before
	})
	if effs := s.effects(); len(effs) != len(others) {
		t.Fatalf("%d effects while the stuck event fails, want only the other partition's %d", len(effs), len(others))
	}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", group); got != 0 {
		t.Fatalf("dead_lettered_total = %v while the stuck event fails: the undecodable message behind it went first", got)
	}

	close(released)
	want := append(append([]events.Envelope{stuck}, behind...), others...)
	checkOnceInOrder(t, s.waitEffects(len(want), 20*time.Second), want)
	testenv.WaitFor(t, 20*time.Second, "the partition unparked", func() bool {
		return metric(t, s.reg, "consumer_parked_partitions", group) == 0
	})
	// Unparked, the partition flows through the main loop again.
	more := event(t, a, 4)
	s.produceEvents(more)
	want = append(want, more)
	checkOnceInOrder(t, s.waitEffects(len(want), 20*time.Second), want)
	dead := readTopic(t, s.brokers, s.dlq, 1)
	if string(dead[0].Value) != string(undecodable.Value) || events.Header(dead[0], consumer.HeaderDLQReason) != consumer.ReasonDecode {
		t.Errorf("dead letter %q reason %q, want the undecodable message, reason decode", dead[0].Value, events.Header(dead[0], consumer.HeaderDLQReason))
	}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", group); got != 1 {
		t.Errorf("dead_lettered_total = %v, want 1", got)
	}
	if got := metric(t, s.reg, "consumer_skipped_total", group); got != 1 {
		t.Errorf("skipped_total = %v, want 1", got)
	}

	// Offsets were committed, the lane's too: a new member of the group
	// sees only what is produced after the first one stopped.
	stop()
	marker := event(t, a, 5)
	s.produceEvents(marker)
	s.start(s.config(map[string]consumer.Handler{typeAppended: appendEffect("second")}))
	effs = s.waitEffects(len(want)+1, 20*time.Second)
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

// Many messages per partition, failing now and then (transient and
// unclassified errors, once each, in batches and alone): every one is
// applied once, each key in order, across parking and unparking.
func TestOrderIsKeptAcrossParking(t *testing.T) {
	t.Parallel()
	s := newStack(t, events.Partitions)
	var want []events.Envelope
	for seq := 1; seq <= 30; seq++ {
		for k := range 8 {
			want = append(want, event(t, fmt.Sprintf("order-%d", k), seq))
		}
	}
	fails := map[string]error{} // event id -> its first attempt's error
	for i, e := range want {
		switch {
		case i%13 == 5:
			fails[e.ID] = fmt.Errorf("update order: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize access"})
		case i%17 == 3:
			fails[e.ID] = errors.New("something odd, once")
		}
	}
	var mu sync.Mutex
	calls := map[string]int{}
	h := appendEffect("c")
	cfg := s.batchConfig(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			mu.Lock()
			calls[e.ID]++
			n := calls[e.ID]
			mu.Unlock()
			if err, ok := fails[e.ID]; ok && n == 1 {
				return err
			}
			return h(ctx, tx, e)
		},
	})
	// Half of the backlog before the consumer starts (batches), half while
	// it runs.
	s.produceEvents(want[:len(want)/2]...)
	s.start(cfg)
	s.produceEvents(want[len(want)/2:]...)

	checkOnceInOrder(t, s.waitEffects(len(want), 60*time.Second), want)
	group := map[string]string{"group": s.group}
	testenv.WaitFor(t, 20*time.Second, "every partition unparked", func() bool {
		return metric(t, s.reg, "consumer_parked_partitions", group) == 0
	})
	if got := metric(t, s.reg, "consumer_retries_total", group); got != float64(len(fails)) {
		t.Errorf("retries_total = %v, want %d (one per failing event)", got, len(fails))
	}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", group); got != 0 {
		t.Errorf("dead_lettered_total = %v, want 0", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range fails {
		if calls[id] != 2 {
			t.Errorf("event %s: %d handler calls, want 2 (one failure)", id, calls[id])
		}
	}
}

// An event of a schema version newer than the consumer knows is retried, not
// dead-lettered, while the other partitions flow; the message stays
// uncommitted meanwhile. Once UnknownVersionWait has passed (a consumer
// started with a short one), it is dead-lettered with reason
// unknown_version, and its partition goes on.
func TestNewerVersionIsRetriedThenDeadLettered(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	a, b := keysOn(t, 0, 2, 1)[0], keysOn(t, 1, 2, 1)[0]
	future, err := events.New(testSource, events.OrderCreated{OrderID: a, CustomerID: "c", Email: "e@example.com", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	future.SchemaVersion = 99
	after := event(t, a, 1)
	s.produceEvents(future, after)

	var attempts atomic.Int32
	handlers := func(name string) map[string]consumer.Handler {
		return map[string]consumer.Handler{
			typeAppended: appendEffect(name),
			events.TypeOrderCreated: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
				attempts.Add(1)
				_, _, err := consumer.DecodeOrder[events.OrderCreated](e)
				return err
			},
		}
	}
	cfg := s.config(handlers("first"))
	cfg.UnknownVersionWait = time.Hour
	stop := s.start(cfg)
	group := map[string]string{"group": s.group}
	testenv.WaitFor(t, 20*time.Second, "retries of the newer version", func() bool {
		return metric(t, s.reg, "consumer_unknown_version_retries_total", group) >= 3
	})
	other := event(t, b, 1)
	s.produceEvents(other)
	checkOnceInOrder(t, s.waitEffects(1, 20*time.Second), []events.Envelope{other})
	if got := metric(t, s.reg, "consumer_dead_lettered_total", group); got != 0 {
		t.Fatalf("dead_lettered_total = %v while the wait lasts, want 0", got)
	}
	if effs := s.effects(); len(effs) != 1 {
		t.Fatalf("%d effects, want only the other partition's: the event after the newer one was applied before it", len(effs))
	}
	stop()

	// Still uncommitted: a consumer with a short wait gets it again, retries
	// it for the wait, and dead-letters it.
	retried := metric(t, s.reg, "consumer_unknown_version_retries_total", group)
	cfg = s.config(handlers("second"))
	cfg.UnknownVersionWait = 300 * time.Millisecond
	began := time.Now()
	s.start(cfg)
	checkOnceInOrder(t, s.waitEffects(2, 20*time.Second), []events.Envelope{other, after})
	dead := readTopic(t, s.brokers, s.dlq, 1)
	if time.Since(began) < 300*time.Millisecond {
		t.Errorf("dead-lettered within %s, before the wait of 300ms passed", time.Since(began))
	}
	if id, reason := events.Header(dead[0], events.HeaderID), events.Header(dead[0], consumer.HeaderDLQReason); id != future.ID || reason != consumer.ReasonUnknownVersion {
		t.Errorf("dead letter is event %s reason %q, want %s %q", id, reason, future.ID, consumer.ReasonUnknownVersion)
	}
	if got := metric(t, s.reg, "consumer_unknown_version_retries_total", group); got <= retried {
		t.Errorf("the second consumer did not retry the newer version (retries_total %v)", got)
	}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", map[string]string{"group": s.group, "reason": consumer.ReasonUnknownVersion}); got != 1 {
		t.Errorf("dead_lettered_total{reason=unknown_version} = %v, want 1", got)
	}
}

// When the group's offset has fallen out of the topic's retention, the
// reader jumps to the first offset still there: the jump is logged at ERROR
// and counted, and the lag counts the lost messages until it is past.
func TestOffsetJumpIsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	read := []events.Envelope{event(t, "order-j", 1), event(t, "order-j", 2), event(t, "order-j", 3)}
	s.produceEvents(read...)
	stop := s.start(s.config(map[string]consumer.Handler{typeAppended: appendEffect("first")}))
	s.waitEffects(len(read), 20*time.Second)
	stop() // closing the reader commits its offsets
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...), Timeout: 5 * time.Second}
	committed := func() int64 {
		resp, err := client.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: s.group, Topics: map[string][]int{s.topic: {0}}})
		if err != nil || resp.Error != nil || len(resp.Topics[s.topic]) != 1 {
			t.Fatalf("fetch committed offset: %v %v", err, resp)
		}
		return resp.Topics[s.topic][0].CommittedOffset
	}
	if got := committed(); got != 3 {
		t.Fatalf("committed offset %d, want 3", got)
	}

	// Offsets 3 to 7; 3 to 5 leave the log before the group reads them.
	var lost, kept []events.Envelope
	for seq := 4; seq <= 8; seq++ {
		if seq <= 6 {
			lost = append(lost, event(t, "order-j", seq))
		} else {
			kept = append(kept, event(t, "order-j", seq))
		}
	}
	s.produceEvents(append(lost, kept...)...)
	deleteRecords(t, s.brokers, s.topic, 0, 6)

	// The handler waits until the lag has been seen: all five messages
	// after the commit, not only the two still in the log.
	gate := make(chan struct{})
	h := appendEffect("second")
	s.start(s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			return h(ctx, tx, e)
		},
	}), func(c *consumer.Consumer) { consumer.SetLagInterval(c, 100*time.Millisecond) })
	group := map[string]string{"group": s.group}
	testenv.WaitFor(t, 20*time.Second, "lag counted from the committed offset", func() bool {
		return metric(t, s.reg, "consumer_lag", group) == 5
	})
	close(gate)
	checkOnceInOrder(t, s.waitEffects(len(read)+len(kept), 20*time.Second), append(read, kept...))

	skipped := map[string]string{"group": s.group, "topic": s.topic, "partition": "0"}
	if got := metric(t, s.reg, "consumer_offsets_skipped_total", skipped); got != 3 {
		t.Errorf("offsets_skipped_total = %v, want 3", got)
	}
	lines := s.logs.lines(t, "offsets skipped, messages lost: they left the log before the group read them")
	if len(lines) != 1 {
		t.Fatalf("%d 'offsets skipped' log lines, want 1", len(lines))
	}
	l := lines[0]
	if l["level"] != "ERROR" || l["topic"] != s.topic || l["partition"] != float64(0) || l["from"] != float64(3) || l["to"] != float64(6) || l["skipped"] != float64(3) {
		t.Errorf("log line %v, want level ERROR, topic %s, partition 0, from 3, to 6, skipped 3", l, s.topic)
	}
	testenv.WaitFor(t, 20*time.Second, "lag 0 once past the loss", func() bool {
		return metric(t, s.reg, "consumer_lag", group) == 0
	})
}

// A parked partition's lane holds at most ParkedMessages fetched messages;
// then the consumer waits for it (back-pressure) and loses nothing.
func TestFullLaneHoldsTheConsumer(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	stuck := event(t, "order-f", 1)
	s.produceEvents(stuck)
	released := make(chan struct{})
	var attempts atomic.Int32
	h := appendEffect("c")
	cfg := s.config(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			if e.ID == stuck.ID {
				attempts.Add(1)
				select {
				case <-released:
				default:
					return consumer.Transient(errors.New("dependency down"))
				}
			}
			return h(ctx, tx, e)
		},
	})
	cfg.ParkedMessages = 2
	s.start(cfg)
	testenv.WaitFor(t, 20*time.Second, "the stuck event's retries", func() bool { return attempts.Load() >= 2 })

	want := []events.Envelope{stuck}
	for seq := 2; seq <= 8; seq++ {
		want = append(want, event(t, "order-f", seq))
	}
	s.produceEvents(want[1:]...)
	testenv.WaitFor(t, 20*time.Second, "the consumer waiting for the full lane", func() bool {
		return len(s.logs.lines(t, "parked partition's queue is full, waiting for its lane")) > 0
	})
	if effs := s.effects(); len(effs) != 0 {
		t.Fatalf("%d effects while the first event fails", len(effs))
	}
	close(released)
	effs := s.waitEffects(len(want), 20*time.Second)
	checkOnceInOrder(t, effs, want)
	for i, e := range effs {
		if e.EventID != want[i].ID {
			t.Fatalf("effect %d is seq %d, want seq %d", i, e.Seq, i+1)
		}
	}
}

// A rebalance while a partition is parked: the lane may go on with a
// partition that moved to the new member, which then applies the same
// messages; the inbox keeps every event applied once, each key in order.
func TestRebalanceWhileParked(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2)
	a, b := keysOn(t, 0, 2, 1)[0], keysOn(t, 1, 2, 1)[0]
	stuck := event(t, a, 1)
	want := []events.Envelope{stuck, event(t, a, 2), event(t, b, 1)}
	s.produceEvents(want...)

	released := make(chan struct{})
	var mu sync.Mutex
	attempts := map[string]int{} // consumer -> attempts at the stuck event
	handler := func(name string) map[string]consumer.Handler {
		h := appendEffect(name)
		return map[string]consumer.Handler{typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			if e.ID == stuck.ID {
				mu.Lock()
				attempts[name]++
				mu.Unlock()
				select {
				case <-released:
				default:
					return consumer.Transient(errors.New("dependency down"))
				}
			}
			return h(ctx, tx, e)
		}}
	}
	attemptsBy := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return attempts[name]
	}
	s.start(s.config(handler("first")))
	s.waitEffects(1, 20*time.Second) // b's, while a's partition is parked
	testenv.WaitFor(t, 20*time.Second, "the first member retrying", func() bool { return attemptsBy("first") >= 2 })

	// The second member joins; it owns one of the partitions once it either
	// applies an event of b or retries the stuck one.
	s.start(s.config(handler("second")))
	joined := false
	for seq := 2; !joined && seq < 60; seq++ {
		e := event(t, b, seq)
		s.produceEvents(e)
		want = append(want, e)
		deadline := time.Now().Add(500 * time.Millisecond)
		for !joined && time.Now().Before(deadline) {
			for _, eff := range s.effects() {
				joined = joined || eff.Consumer == "second"
			}
			joined = joined || attemptsBy("second") > 0
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !joined {
		t.Fatal("the second member never took a partition")
	}
	close(released)
	more := []events.Envelope{event(t, a, 3), event(t, b, 100)}
	s.produceEvents(more...)
	want = append(want, more...)
	checkOnceInOrder(t, s.waitEffects(len(want), 30*time.Second), want)
	if got := metric(t, s.reg, "consumer_dead_lettered_total", map[string]string{"group": s.group}); got != 0 {
		t.Errorf("dead_lettered_total = %v, want 0", got)
	}
}
