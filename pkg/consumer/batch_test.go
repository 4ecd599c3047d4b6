package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// batchConfig is s.config with a collection window long enough that a
// backlog produced before the consumer starts is applied in batches even on
// a slow machine under -race.
func (s *stack) batchConfig(handlers map[string]consumer.Handler) consumer.Config {
	cfg := s.config(handlers)
	cfg.BatchWait = 20 * time.Millisecond
	return cfg
}

// recordTx wraps h so that each event that reaches h also records the id of
// the transaction it ran in; transactions counts them.
func (s *stack) recordTx(h consumer.Handler) consumer.Handler {
	s.t.Helper()
	if _, err := s.pool.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS txs (event_id uuid NOT NULL, txid bigint NOT NULL)`); err != nil {
		s.t.Fatalf("create txs table: %v", err)
	}
	return func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		if _, err := tx.Exec(ctx, `INSERT INTO txs VALUES ($1, txid_current())`, e.ID); err != nil {
			return err
		}
		return h(ctx, tx, e)
	}
}

// transactions is how many transactions the committed effects took.
func (s *stack) transactions() int {
	s.t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(DISTINCT txid) FROM txs`).Scan(&n); err != nil {
		s.t.Fatalf("count transactions: %v", err)
	}
	return n
}

func TestBacklogIsAppliedInBatches(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1} { // the default, and one at a time
		t.Run(fmt.Sprintf("BatchSize=%d", size), func(t *testing.T) {
			t.Parallel()
			s := newStack(t, events.Partitions)
			var want []events.Envelope
			for seq := 1; seq <= 40; seq++ {
				for k := range 5 {
					want = append(want, event(t, fmt.Sprintf("order-%d", k), seq))
				}
			}
			s.produceEvents(want...)

			var mu sync.Mutex
			var hooked []string // event ids, in the order their hooks ran
			h := s.recordTx(appendEffect("c"))
			cfg := s.batchConfig(map[string]consumer.Handler{
				typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
					consumer.AfterCommit(ctx, func() { mu.Lock(); hooked = append(hooked, e.ID); mu.Unlock() })
					return h(ctx, tx, e)
				},
			})
			cfg.BatchSize = size
			s.start(cfg)

			effs := s.waitEffects(len(want), 30*time.Second)
			checkOnceInOrder(t, effs, want)
			group := map[string]string{"group": s.group}
			// Outcomes and hooks are recorded just after the commit that
			// made the effects visible.
			testenv.WaitFor(t, 5*time.Second, "the outcomes of the committed batches", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(hooked) >= len(want) && metric(t, s.reg, "consumer_processing_duration_seconds", group) >= float64(len(want))
			})
			txs, batches := s.transactions(), metric(t, s.reg, "consumer_batch_size", group)
			t.Logf("%d events in %d transactions, %v batches", len(want), txs, batches)
			if size == 1 {
				if txs != len(want) || batches != float64(len(want)) {
					t.Errorf("BatchSize 1: %d transactions and %v batches for %d events, want one each", txs, batches, len(want))
				}
			} else if txs > len(want)/4 {
				t.Errorf("%d transactions for a backlog of %d events, want batches of them", txs, len(want))
			}
			for name, want := range map[string]float64{"consumer_messages_processed_total": 200, "consumer_processing_duration_seconds": 200} {
				if got := metric(t, s.reg, name, group); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			// Hooks run after their batch committed, once each, in the
			// order the effects were applied.
			var applied []string
			for _, e := range effs {
				applied = append(applied, e.EventID)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(hooked, applied) {
				t.Errorf("hooks ran for %d events, not once each in the order applied", len(hooked))
			}
		})
	}
}

// A message that fails in the middle of a batch rolls the batch back; it is
// isolated and dead-lettered, and the messages around it are applied once
// each, in order.
func TestPoisonInABatchIsIsolated(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	var want, all []events.Envelope
	for seq := 1; seq <= 30; seq++ {
		e := event(t, "order-b", seq)
		all = append(all, e)
		if seq != 10 && seq != 20 {
			want = append(want, e)
		}
	}
	permanent, unclassified := all[9], all[19]
	s.produceEvents(all...)

	var calls sync.Map // event id -> *atomic.Int32
	count := func(id string) int32 {
		n, _ := calls.LoadOrStore(id, new(atomic.Int32))
		return n.(*atomic.Int32).Add(1)
	}
	h := s.recordTx(appendEffect("c"))
	s.start(s.batchConfig(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			count(e.ID)
			switch e.ID {
			case permanent.ID:
				return consumer.Permanent(errors.New("cannot use this event"))
			case unclassified.ID:
				panic("handler bug")
			}
			return h(ctx, tx, e)
		},
	}))

	effs := s.waitEffects(len(want), 30*time.Second)
	checkOnceInOrder(t, effs, want)
	for i, e := range effs {
		if e.EventID != want[i].ID {
			t.Fatalf("effect %d is seq %d, want seq %d", i, e.Seq, i+1)
		}
	}
	dead := readTopic(t, s.brokers, s.dlq, 2)
	for i, want := range []struct {
		id, reason string
	}{{permanent.ID, consumer.ReasonHandler}, {unclassified.ID, consumer.ReasonMaxAttempts}} {
		if id, reason := events.Header(dead[i], events.HeaderID), events.Header(dead[i], consumer.HeaderDLQReason); id != want.id || reason != want.reason {
			t.Errorf("dead letter %d: event %s reason %s, want %s %s", i, id, reason, want.id, want.reason)
		}
	}
	// The batch's failure is the poison's first attempt: permanent is not
	// retried, unclassified is, up to MaxAttempts (3) in all.
	for id, want := range map[string]int32{permanent.ID: 1, unclassified.ID: 3} {
		n, _ := calls.Load(id)
		if got := n.(*atomic.Int32).Load(); got != want {
			t.Errorf("event %s: %d handler calls, want %d", id, got, want)
		}
	}
	if txs := s.transactions(); txs >= len(want) {
		t.Errorf("%d transactions for %d events: no batch was applied", txs, len(want))
	}
	group := map[string]string{"group": s.group}
	testenv.WaitFor(t, 5*time.Second, "the outcomes of the committed batches", func() bool {
		return metric(t, s.reg, "consumer_messages_processed_total", group) >= float64(len(want))
	})
	if got := metric(t, s.reg, "consumer_messages_processed_total", group); got != float64(len(want)) {
		t.Errorf("processed_total = %v, want %d", got, len(want))
	}
	if got := metric(t, s.reg, "consumer_retries_total", group); got != 2 {
		t.Errorf("retries_total = %v, want 2", got)
	}
}

// A transient failure in a batch is retried in place: nothing after it in
// the partition is applied before it, and the hooks of the rolled-back
// attempt never run.
func TestTransientFailureInABatchIsRetriedInPlace(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1)
	var want []events.Envelope
	for seq := 1; seq <= 10; seq++ {
		want = append(want, event(t, "order-a", seq), event(t, "order-b", seq))
	}
	s.produceEvents(want...)
	flaky := want[9]
	var calls atomic.Int32
	var mu sync.Mutex
	hooks := map[string]int{}
	var hookOrder []string
	h := s.recordTx(appendEffect("c"))
	s.start(s.batchConfig(map[string]consumer.Handler{
		typeAppended: func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
			consumer.AfterCommit(ctx, func() {
				mu.Lock()
				defer mu.Unlock()
				hooks[e.ID]++
				hookOrder = append(hookOrder, e.ID)
			})
			if e.ID == flaky.ID && calls.Add(1) <= 3 {
				return fmt.Errorf("update order: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize access"})
			}
			return h(ctx, tx, e)
		},
	}))

	effs := s.waitEffects(len(want), 30*time.Second)
	checkOnceInOrder(t, effs, want)
	for i, e := range effs {
		if e.EventID != want[i].ID {
			t.Fatalf("effect %d is %s seq %d, want the partition's order", i, e.Key, e.Seq)
		}
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d calls for the flaky event, want 4", n)
	}
	group := map[string]string{"group": s.group}
	if got := metric(t, s.reg, "consumer_retries_total", group); got != 3 {
		t.Errorf("retries_total = %v, want 3", got)
	}
	if got := metric(t, s.reg, "consumer_dead_lettered_total", group); got != 0 {
		t.Errorf("dead_lettered_total = %v, want 0", got)
	}
	if txs := s.transactions(); txs >= len(want) {
		t.Errorf("%d transactions for %d events: no batch was applied", txs, len(want))
	}
	// Hooks run just after the commit that made the effects visible.
	testenv.WaitFor(t, 5*time.Second, "the hooks of the committed batches", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(hookOrder) >= len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	for i, e := range want {
		if hooks[e.ID] != 1 {
			t.Errorf("event %d: hook ran %d times, want once", i, hooks[e.ID])
		}
		if i < len(hookOrder) && hookOrder[i] != e.ID {
			t.Errorf("hook %d ran for another event than the %dth applied", i, i)
		}
	}
}
