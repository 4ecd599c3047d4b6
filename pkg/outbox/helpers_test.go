package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// setup returns a pool on a fresh schema holding the outbox tables and seqs,
// the side table where load records each committed event's per-key sequence
// number.
func setup(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	ctx := context.Background()
	for _, ddl := range []string{outbox.Schema, outbox.DeadLetterSchema} {
		if _, err := pool.Exec(ctx, ddl); err != nil {
			t.Fatalf("create outbox tables: %v", err)
		}
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE seqs (event_id uuid PRIMARY KEY, key text NOT NULL, n int NOT NULL)`); err != nil {
		t.Fatalf("create seqs table: %v", err)
	}
	return pool
}

func newEvent(t testing.TB, key string) events.Envelope {
	t.Helper()
	return events.Envelope{
		ID:            uuid.NewString(),
		Type:          "OutboxTested",
		SchemaVersion: 1,
		Source:        "outbox-test",
		Subject:       key,
		Time:          time.Now().UTC(),
		CorrelationID: key,
		Data:          json.RawMessage(`{"key":"` + key + `"}`),
	}
}

// writeEvents commits events to the outbox in one transaction.
func writeEvents(t testing.TB, ctx context.Context, pool *pgxpool.Pool, topic string, es ...events.Envelope) {
	t.Helper()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, e := range es {
			if err := outbox.Write(ctx, tx, topic, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("write events: %v", err)
	}
}

func pendingRows(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatalf("count outbox rows: %v", err)
	}
	return n
}

// startRelay runs a relay until the returned stop is called or the test
// ends; stop waits for Run to return and fails the test if it returned an
// error.
func startRelay(t testing.TB, cfg outbox.RelayConfig) (stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- outbox.NewRelay(cfg).Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay returned %v, want nil on cancellation", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("relay did not stop within 15s of cancellation")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter sends relay logs to the test log, so they show only on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

// newWriter returns a writer with a transport of its own: kafka-go's shared
// default transport serves topic metadata from a cache refreshed every 6 s,
// so a writer on it would not see the topics other tests just created.
func newWriter(t testing.TB, brokers []string) *kafka.Writer {
	w := broker.NewWriter(brokers)
	tr := &kafka.Transport{}
	w.Transport = tr
	t.Cleanup(func() {
		_ = w.Close()
		tr.CloseIdleConnections()
	})
	return w
}

// lastOffsets returns the high watermark of each partition of topic.
func lastOffsets(ctx context.Context, brokers []string, topic string, partitions int) ([]int64, error) {
	offs := make([]int64, partitions)
	for p := range partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p)
		if err != nil {
			return nil, err
		}
		offs[p], err = conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			return nil, err
		}
	}
	return offs, nil
}

// readTopic waits until topic holds at least want messages, then returns
// every message in it, partition by partition in offset order.
func readTopic(t testing.TB, brokers []string, topic string, want int, timeout time.Duration) []kafka.Message {
	t.Helper()
	const partitions = 3
	var offs []int64
	testenv.WaitFor(t, timeout, "messages on "+topic, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		offs, err = lastOffsets(ctx, brokers, topic, partitions)
		if err != nil {
			return false
		}
		var sum int64
		for _, o := range offs {
			sum += o
		}
		return sum >= int64(want)
	})
	var msgs []kafka.Message
	for p, last := range offs {
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				cancel()
				r.Close()
				t.Fatalf("read %s partition %d: %v", topic, p, err)
			}
			msgs = append(msgs, m)
			if m.Offset >= last-1 {
				break
			}
		}
		cancel()
		r.Close()
	}
	return msgs
}

// committedEvent is an event load committed, with its per-key sequence
// number (its position in the key's commit order).
type committedEvent struct {
	key string
	n   int
}

// load runs writers goroutines, each committing perWriter transactions of
// one event for a random key out of keys, with a random delay before commit,
// and rolling back about one in ten. Each transaction numbers its event after
// outbox.Write returned, so under the outbox's key lock: the numbers of one
// key follow commit order. It returns the rolled-back event ids; the
// committed ones are in seqs (see committed).
func load(t testing.TB, pool *pgxpool.Pool, topic string, writers, perWriter, keys int) (rolledBack map[string]bool) {
	t.Helper()
	errRollback := errors.New("deliberate rollback")
	var mu sync.Mutex
	rolledBack = map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	prefix := uuid.NewString()[:8]
	for range writers {
		wg.Go(func() {
			ctx := context.Background()
			for range perWriter {
				key := prefix + "-key-" + string(rune('a'+rand.IntN(keys)))
				e := newEvent(t, key)
				rollback := rand.IntN(10) == 0
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if err := outbox.Write(ctx, tx, topic, e); err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, `INSERT INTO seqs (event_id, key, n)
						SELECT $1, $2, coalesce(max(n), 0) + 1 FROM seqs WHERE key = $2`, e.ID, key); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(8)) * time.Millisecond)
					if rollback {
						return errRollback
					}
					return nil
				})
				switch {
				case errors.Is(err, errRollback):
					mu.Lock()
					rolledBack[e.ID] = true
					mu.Unlock()
				case err != nil:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}
	return rolledBack
}

func committed(t testing.TB, pool *pgxpool.Pool) map[string]committedEvent {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id::text, key, n FROM seqs`)
	if err != nil {
		t.Fatalf("read seqs: %v", err)
	}
	out := map[string]committedEvent{}
	var id string
	var c committedEvent
	_, err = pgx.ForEachRow(rows, []any{&id, &c.key, &c.n}, func() error {
		out[id] = c
		return nil
	})
	if err != nil {
		t.Fatalf("read seqs: %v", err)
	}
	return out
}

// checkPublished asserts what a consumer that skips duplicates would see:
// every committed event, none of the rolled-back ones, and each key's events
// in commit order (sequence numbers 1, 2, 3, ... with no gap). It returns the
// number of duplicates.
func checkPublished(t testing.TB, msgs []kafka.Message, want map[string]committedEvent, rolledBack map[string]bool) (duplicates int) {
	t.Helper()
	seen := map[string]bool{}
	next := map[string]int{}
	for _, m := range msgs {
		id := events.Header(m, events.HeaderID)
		if rolledBack[id] {
			t.Fatalf("rolled-back event %s was published", id)
		}
		c, ok := want[id]
		if !ok {
			t.Fatalf("unknown event %s was published", id)
		}
		if string(m.Key) != c.key {
			t.Fatalf("event %s published with key %q, want %q", id, m.Key, c.key)
		}
		if seen[id] {
			duplicates++
			continue
		}
		seen[id] = true
		if next[c.key]+1 != c.n {
			t.Fatalf("key %s: event number %d published after %d: not in commit order", c.key, c.n, next[c.key])
		}
		next[c.key] = c.n
	}
	if len(seen) != len(want) {
		t.Fatalf("%d of %d committed events published", len(seen), len(want))
	}
	return duplicates
}

// readyTopic creates a 3-partition topic and waits until the leader of every
// partition serves it. Just after creation the broker may still answer Not
// Leader For Partition for some partitions: the writer then fails part of a
// batch and the relay publishes all of it again, which a test counting exact
// messages cannot tell from a relay bug.
func readyTopic(t testing.TB, brokers []string) string {
	t.Helper()
	topic := testenv.Topics(t, brokers, 3, "outbox")[0]
	testenv.WaitFor(t, 10*time.Second, "leaders of "+topic, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := lastOffsets(ctx, brokers, topic, 3)
		return err == nil
	})
	return topic
}
