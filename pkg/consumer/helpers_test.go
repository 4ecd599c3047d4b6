package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
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
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// typeAppended is the test's own event type: "append seq to key's sequence".
const typeAppended = "test.Appended"

type appended struct {
	Key string `json:"key"`
	Seq int    `json:"seq"`
}

// stack is one test's infrastructure: a schema with the inbox and an effects
// table, a topic, a group with its dead-letter topic, and a producer.
type stack struct {
	t       testing.TB
	pool    *pgxpool.Pool
	schema  string
	brokers []string
	topic   string
	group   string
	dlq     string
	writer  *kafka.Writer
	reg     *prometheus.Registry
	logs    *logBuffer
}

func newStack(t testing.TB, partitions int) *stack {
	t.Helper()
	pool, schema := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, consumer.Schema); err != nil {
		t.Fatalf("apply inbox schema: %v", err)
	}
	// No unique constraint on event_id: a second effect of one event must
	// show up as a second row.
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (
		id       bigserial PRIMARY KEY,
		event_id uuid NOT NULL,
		key      text NOT NULL,
		seq      int  NOT NULL,
		consumer text NOT NULL
	)`); err != nil {
		t.Fatalf("create effects table: %v", err)
	}
	brokers := testenv.Kafka(t)
	topic := testenv.Topics(t, brokers, partitions, "consumer")[0]
	group := testenv.Name("consumer")
	dlq := events.DeadLetterTopic(group)
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
	// A transport of its own: the shared default one caches metadata from
	// before this test created its topic.
	w := broker.NewWriter(brokers)
	tr := &kafka.Transport{}
	w.Transport = tr
	t.Cleanup(func() { _ = w.Close(); tr.CloseIdleConnections() })
	s := &stack{t: t, pool: pool, schema: schema, brokers: brokers, topic: topic, group: group, dlq: dlq,
		writer: w, reg: prometheus.NewRegistry(), logs: &logBuffer{}}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("CONSUMER_LOGS") != "" {
			t.Logf("consumer logs:\n%s", s.logs.String())
		}
	})
	return s
}

// config is a consumer config for the stack's topic and group with fast
// retries; handlers maps event types to handlers.
func (s *stack) config(handlers map[string]consumer.Handler) consumer.Config {
	return consumer.Config{
		Brokers:     s.brokers,
		Group:       s.group,
		Handlers:    handlers,
		Routes:      s.routes(handlers),
		Pool:        s.pool,
		Logger:      telemetry.NewLogger(s.logs, "consumer-test", -4), // debug
		Registerer:  s.reg,
		MaxAttempts: 3,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  200 * time.Millisecond,
	}
}

// testSource is the ce_source of the test's events.
const testSource = "consumer-test"

// routes routes every type of handlers through the stack's topic, from
// testSource.
func (s *stack) routes(handlers map[string]consumer.Handler) events.Routes {
	routes := events.Routes{}
	for typ := range handlers {
		routes[typ] = events.Route{Topic: s.topic, Source: testSource}
	}
	return routes
}

// start runs a consumer until the returned stop is called (or the test
// ends); stop fails the test unless Run returns nil promptly.
func (s *stack) start(cfg consumer.Config, opts ...func(*consumer.Consumer)) (stop func()) {
	s.t.Helper()
	c, err := consumer.New(cfg)
	if err != nil {
		s.t.Fatalf("new consumer: %v", err)
	}
	for _, o := range opts {
		o(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					s.t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(20 * time.Second):
				s.t.Errorf("Run did not return within 20s of cancellation")
			}
		})
	}
	s.t.Cleanup(stop)
	return stop
}

func (s *stack) produce(msgs ...kafka.Message) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i := range msgs {
		msgs[i].Topic = s.topic
	}
	if err := s.writer.WriteMessages(ctx, msgs...); err != nil {
		s.t.Fatalf("produce: %v", err)
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

// event is a test.Appended event for key with sequence number seq.
func event(t testing.TB, key string, seq int) events.Envelope {
	t.Helper()
	data, err := json.Marshal(appended{Key: key, Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	return envelope(t, typeAppended, key, data)
}

func envelope(t testing.TB, typ, key string, data []byte) events.Envelope {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{
		ID:            id.String(),
		Type:          typ,
		SchemaVersion: 1,
		Source:        testSource,
		Subject:       key,
		Time:          time.Now().UTC().Truncate(time.Microsecond),
		CorrelationID: key,
		Data:          data,
	}
}

// appendEffect is the handler under test: it records the event as a row of
// effects, or fails permanently when the data is not an appended payload.
func appendEffect(name string) consumer.Handler {
	return func(ctx context.Context, tx pgx.Tx, e events.Envelope) error {
		var p appended
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return consumer.Permanent(fmt.Errorf("decode %s: %w", e.Type, err))
		}
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, key, seq, consumer) VALUES ($1, $2, $3, $4)`, e.ID, p.Key, p.Seq, name)
		if err != nil {
			return fmt.Errorf("insert effect: %w", err)
		}
		return nil
	}
}

type effect struct {
	EventID  string
	Key      string
	Seq      int
	Consumer string
}

// effects lists the effects in the order they were committed.
func (s *stack) effects() []effect {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT event_id::text AS event_id, key, seq, consumer FROM effects ORDER BY id`)
	if err != nil {
		s.t.Fatalf("query effects: %v", err)
	}
	effs, err := pgx.CollectRows(rows, pgx.RowToStructByName[effect])
	if err != nil {
		s.t.Fatalf("read effects: %v", err)
	}
	return effs
}

func (s *stack) waitEffects(n int, timeout time.Duration) []effect {
	s.t.Helper()
	var effs []effect
	testenv.WaitFor(s.t, timeout, fmt.Sprintf("%d effects", n), func() bool {
		effs = s.effects()
		return len(effs) >= n
	})
	return effs
}

// checkOnceInOrder fails unless effs holds exactly one effect per event of
// want and nothing else, and each key's sequence numbers rise in the order
// the effects were committed.
func checkOnceInOrder(t *testing.T, effs []effect, want []events.Envelope) {
	t.Helper()
	count := map[string]int{}
	for _, e := range effs {
		count[e.EventID]++
	}
	for _, e := range want {
		if count[e.ID] != 1 {
			t.Errorf("event %s applied %d times, want once", e.ID, count[e.ID])
		}
		delete(count, e.ID)
	}
	for id, n := range count {
		t.Errorf("unexpected effect of event %s (%d times)", id, n)
	}
	last := map[string]int{}
	for _, e := range effs {
		if e.Seq <= last[e.Key] {
			t.Errorf("key %s: seq %d applied after seq %d", e.Key, e.Seq, last[e.Key])
		}
		last[e.Key] = e.Seq
	}
}

// metric sums the samples of a counter, gauge or histogram (its count)
// named name whose labels include labels.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
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
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// series counts the label sets of metric name whose labels include labels.
func series(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			n++
		}
	}
	return n
}

// readTopic reads n messages from topic with a fresh group.
func readTopic(t testing.TB, brokers []string, topic string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           brokers,
		GroupID:           testenv.Name("reader"),
		GroupTopics:       []string{topic},
		StartOffset:       kafka.FirstOffset,
		MaxWait:           100 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var msgs []kafka.Message
	for len(msgs) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: got %d of %d messages: %v", topic, len(msgs), n, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// logBuffer collects the consumer's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log lines whose msg is msg.
func (b *logBuffer) lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(b.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// flakyPublisher fails its first fails writes, then passes them on.
type flakyPublisher struct {
	mu    sync.Mutex
	fails int
	calls int
	next  consumer.Publisher
}

func (p *flakyPublisher) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	p.calls++
	fail := p.calls <= p.fails
	p.mu.Unlock()
	if fail {
		return errors.New("broker unavailable (test)")
	}
	return p.next.WriteMessages(ctx, msgs...)
}
