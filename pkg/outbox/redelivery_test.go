package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// The two halves of the delivery guarantee together: a relay that dies
// between publishing and deleting publishes every event twice, and the
// idempotent consumer applies each of them once.
func TestRepublishedEventsAreAppliedOnce(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := readyTopic(t, brokers)
	ctx := context.Background()
	for _, ddl := range []string{consumer.Schema, `CREATE TABLE effects (event_id uuid NOT NULL)`} {
		if _, err := pool.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	const n = 20
	var es []events.Envelope
	for i := range n {
		es = append(es, newEvent(t, string(rune('a'+i%4))))
	}
	writeEvents(t, ctx, pool, topic, es...)
	w := newWriter(t, brokers)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	crashing := outbox.NewRelay(outbox.RelayConfig{Pool: pool, Publisher: crashAfterPublish{w, cancel}, Logger: testLogger(t), PollInterval: 100 * time.Millisecond})
	if err := crashing.Run(rctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: w, PollInterval: 100 * time.Millisecond})
	if got := len(readTopic(t, brokers, topic, 2*n, 15*time.Second)); got != 2*n {
		t.Fatalf("%d messages on the topic, want %d", got, 2*n)
	}

	group := testenv.Name("redelivery")
	if err := broker.EnsureTopics(ctx, brokers, 1, events.DeadLetterTopic(group)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.DeleteTopics(context.Background(), brokers, events.DeadLetterTopic(group)) })
	reg := prometheus.NewRegistry()
	c, err := consumer.New(consumer.Config{
		Brokers: brokers, Group: group, Pool: pool, Logger: testLogger(t), Registerer: reg,
		Routes: events.Routes{"OutboxTested": {Topic: topic, Source: "outbox-test"}},
		Handlers: map[string]consumer.Handler{
			"OutboxTested": func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
				_, err := tx.Exec(ctx, `INSERT INTO effects (event_id) VALUES ($1)`, e.ID)
				return err
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	t.Cleanup(func() { stop(); <-done })

	testenv.WaitFor(t, 30*time.Second, "the consumer to see every message", func() bool {
		return counter(t, reg, "consumer_messages_processed_total")+counter(t, reg, "consumer_duplicates_total") >= 2*n
	})
	if got := counter(t, reg, "consumer_duplicates_total"); got != n {
		t.Errorf("%v duplicates skipped, want %d", got, n)
	}
	rows, err := pool.Query(ctx, `SELECT event_id::text, count(*) FROM effects GROUP BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]int{}
	for rows.Next() {
		var id string
		var k int
		if err := rows.Scan(&id, &k); err != nil {
			t.Fatal(err)
		}
		applied[id] = k
	}
	if len(applied) != n {
		t.Errorf("%d events applied, want %d", len(applied), n)
	}
	for _, e := range es {
		if applied[e.ID] != 1 {
			t.Errorf("event %s applied %d times, want once", e.ID, applied[e.ID])
		}
	}
}

// counter sums every series of a counter family in reg.
func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += counterValue(m)
		}
	}
	return sum
}

func counterValue(m *dto.Metric) float64 { return m.GetCounter().GetValue() }
