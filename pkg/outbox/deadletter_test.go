package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// insertRaw commits e to the outbox without Write's checks: a row as an
// older version of a service, or a smaller limit, could have left it.
func insertRaw(t testing.TB, pool *pgxpool.Pool, topic string, e events.Envelope) {
	t.Helper()
	body, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(context.Background(),
		`INSERT INTO outbox (event_id, topic, key, envelope) VALUES ($1, $2, $3, $4)`, e.ID, topic, e.Subject, body); err != nil {
		t.Fatalf("insert outbox row: %v", err)
	}
}

// bigEvent is an event for key whose payload is about size bytes.
func bigEvent(t testing.TB, key string, size int) events.Envelope {
	e := newEvent(t, key)
	e.Data = json.RawMessage(`{"pad":"` + strings.Repeat("x", size) + `"}`)
	return e
}

func deadLetters(t testing.TB, pool *pgxpool.Pool) []outbox.DeadLetter {
	t.Helper()
	dl, err := outbox.ListDeadLetters(context.Background(), pool, 100)
	if err != nil {
		t.Fatal(err)
	}
	return dl
}

// topicIDs returns the event ids on topic, in order per key.
func topicIDs(t testing.TB, brokers []string, topic string, want int) map[string][]string {
	t.Helper()
	byKey := map[string][]string{}
	for _, m := range readTopic(t, brokers, topic, want, 20*time.Second) {
		byKey[string(m.Key)] = append(byKey[string(m.Key)], events.Header(m, events.HeaderID))
	}
	return byKey
}

// A row larger than the writer ever sends is refused by the writer before
// anything reaches Kafka; it is set aside and the rows behind it, of its own
// key and of others, publish.
func TestRowTooLargeForTheWriterIsSetAsideAndTheNextRowsPublish(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := readyTopic(t, brokers)
	reg := prometheus.NewRegistry()

	first, big, behind, other := newEvent(t, "a"), bigEvent(t, "a", broker.MaxBatchBytes), newEvent(t, "a"), newEvent(t, "b")
	for _, e := range []events.Envelope{first, big, behind, other} {
		insertRaw(t, pool, topic, e)
	}
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: newWriter(t, brokers), Registerer: reg, PollInterval: 100 * time.Millisecond})
	testenv.WaitFor(t, 20*time.Second, "outbox emptied", func() bool { return pendingRows(t, pool) == 0 })

	got := topicIDs(t, brokers, topic, 3)
	if strings.Join(got["a"], ",") != first.ID+","+behind.ID || strings.Join(got["b"], ",") != other.ID {
		t.Fatalf("published %v, want a: [%s %s], b: [%s]", got, first.ID, behind.ID, other.ID)
	}
	dl := deadLetters(t, pool)
	if len(dl) != 1 || dl[0].EventID != big.ID || dl[0].Reason != "message_too_large" || dl[0].Topic != topic ||
		dl[0].Key != "a" || dl[0].Type != big.Type || dl[0].Bytes < broker.MaxBatchBytes || dl[0].Error == "" {
		t.Fatalf("dead letters %+v, want the big event, message_too_large", dl)
	}
	if n := metricValue(t, reg, "outbox_dead_lettered_total"); n != 1 {
		t.Fatalf("outbox_dead_lettered_total = %v, want 1", n)
	}
}

// A row the broker refuses (here a topic whose limit is below the writer's)
// is refused with the whole produce batch it travelled in: each row of the
// batch is tried alone, the one refused alone is set aside, the others
// publish in order.
func TestRowTheBrokerRefusesIsIsolatedFromItsBatch(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := strings.ReplaceAll(testenv.Name("outbox.small"), "_", ".")
	if _, err := broker.CreateTopics(ctx, brokers, broker.TopicSpec{Name: topic, Partitions: 3, ReplicationFactor: 1,
		Config: map[string]string{"max.message.bytes": "20000"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.DeleteTopics(context.Background(), brokers, topic) })

	// One key: one partition, one produce batch.
	var es []events.Envelope
	for i := range 6 {
		if i == 3 {
			es = append(es, bigEvent(t, "k", 30000))
			continue
		}
		es = append(es, newEvent(t, "k"))
	}
	writeEvents(t, ctx, pool, topic, es...)
	reg := prometheus.NewRegistry()
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: newWriter(t, brokers), Registerer: reg, PollInterval: 100 * time.Millisecond})
	testenv.WaitFor(t, 30*time.Second, "outbox emptied", func() bool { return pendingRows(t, pool) == 0 })

	got := topicIDs(t, brokers, topic, 5)
	want := []string{es[0].ID, es[1].ID, es[2].ID, es[4].ID, es[5].ID}
	if strings.Join(got["k"], ",") != strings.Join(want, ",") {
		t.Errorf("published %v, want %v", got["k"], want)
	}
	dl := deadLetters(t, pool)
	if len(dl) != 1 || dl[0].EventID != es[3].ID || dl[0].Reason != "message_too_large" {
		t.Fatalf("dead letters %+v, want event 3, message_too_large", dl)
	}
}

// Rows for a topic that does not exist block nothing once the topic has
// stayed unknown for the grace period; re-created, the topic takes them
// when they are requeued.
func TestRowsForAMissingTopicAreSetAsideAndRequeued(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := readyTopic(t, brokers)
	missing := strings.ReplaceAll(testenv.Name("outbox.missing"), "_", ".")
	ctx := context.Background()

	lost, after := newEvent(t, "m"), newEvent(t, "n")
	writeEvents(t, ctx, pool, missing, lost)
	writeEvents(t, ctx, pool, topic, after)
	reg := prometheus.NewRegistry()
	// The writer learns of the re-created topic within half a second
	// (kafka-go's default: 6 s), well inside the grace.
	w := newWriter(t, brokers)
	w.Transport.(*kafka.Transport).MetadataTTL = 500 * time.Millisecond
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: w, Registerer: reg,
		PollInterval: 100 * time.Millisecond, UnknownTopicGrace: 2 * time.Second})
	testenv.WaitFor(t, 30*time.Second, "outbox emptied", func() bool { return pendingRows(t, pool) == 0 })
	if got := topicIDs(t, brokers, topic, 1); len(got["n"]) != 1 || got["n"][0] != after.ID {
		t.Fatalf("published %v, want the row behind the missing topic's", got)
	}
	dl := deadLetters(t, pool)
	if len(dl) != 1 || dl[0].EventID != lost.ID || dl[0].Reason != "unknown_topic" || dl[0].Topic != missing {
		t.Fatalf("dead letters %+v, want the lost event, unknown_topic", dl)
	}

	if _, err := outbox.Requeue(ctx, pool, dl[0].ID+1000); !errors.Is(err, outbox.ErrDeadLetterNotFound) {
		t.Fatalf("requeue of an unknown id: %v, want ErrDeadLetterNotFound", err)
	}
	if err := broker.EnsureTopics(ctx, brokers, 3, missing); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.DeleteTopics(context.Background(), brokers, missing) })
	newID, err := outbox.Requeue(ctx, pool, dl[0].ID)
	if err != nil || newID <= dl[0].ID {
		t.Fatalf("requeue: id %d, %v; want a new id after %d", newID, err, dl[0].ID)
	}
	if _, err := outbox.Requeue(ctx, pool, dl[0].ID); !errors.Is(err, outbox.ErrDeadLetterNotFound) {
		t.Fatalf("second requeue: %v, want ErrDeadLetterNotFound", err)
	}
	testenv.WaitFor(t, 30*time.Second, "requeued row published", func() bool { return pendingRows(t, pool) == 0 })
	if got := topicIDs(t, brokers, missing, 1); len(got["m"]) != 1 || got["m"][0] != lost.ID {
		t.Fatalf("published on the re-created topic %v, want the requeued event", got)
	}
	if dl := deadLetters(t, pool); len(dl) != 0 {
		t.Fatalf("dead letters after requeue: %+v", dl)
	}
}

// Write refuses an event that could never be published, and the use case's
// transaction commits nothing of it.
func TestWriteRefusesAnEventTooLargeForKafka(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return outbox.Write(ctx, tx, "orders.events", bigEvent(t, "big", broker.MaxBatchBytes))
	})
	if !errors.Is(err, outbox.ErrTooLarge) {
		t.Fatalf("Write of an oversize event: %v, want ErrTooLarge", err)
	}
	if n := pendingRows(t, pool); n != 0 {
		t.Fatalf("%d rows in the outbox", n)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return outbox.Write(ctx, tx, "orders.events", bigEvent(t, "fits", broker.MaxBatchBytes-2000))
	})
	if err != nil {
		t.Fatalf("Write of an event that fits: %v", err)
	}
}
