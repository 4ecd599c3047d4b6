package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// BenchmarkRelayDrain measures how fast a running relay, with tracing and
// metrics on, publishes and deletes a backlog committed in one transaction:
// each iteration times commit to empty outbox for backlog events over keys
// keys on a 3-partition topic.
func BenchmarkRelayDrain(b *testing.B) {
	const backlog, keys = 2000, 50
	pool := setup(b)
	brokers := testenv.Kafka(b)
	topic := testenv.Topics(b, brokers, 3, "outbox-bench")[0]
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter())))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	startRelay(b, outbox.RelayConfig{
		Pool: pool, Publisher: newWriter(b, brokers),
		TracerProvider: tp, Registerer: prometheus.NewRegistry(),
	})
	// Warm up: the first write to a fresh topic waits for its metadata.
	writeEvents(b, context.Background(), pool, topic, newEvent(b, "warm-up"))
	waitDrained(b, pool)

	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		tx, err := pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for i := range backlog {
			if err := outbox.Write(ctx, tx, topic, newEvent(b, fmt.Sprintf("key-%d", i%keys))); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		waitDrained(b, pool)
	}
	b.ReportMetric(float64(backlog*b.N)/b.Elapsed().Seconds(), "events/s")
}

// waitDrained polls the outbox every millisecond until it is empty.
func waitDrained(b *testing.B, pool *pgxpool.Pool) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("outbox still holds %d rows after a minute", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkRelayHop measures one event's hop through an idle relay: each
// iteration commits one event and times until the relay has published it
// (Kafka acknowledged it) and deleted its row. It reports the median and
// p99 of those times; the outbox is polled every 100 µs, which adds to them.
func BenchmarkRelayHop(b *testing.B) {
	pool := setup(b)
	brokers := testenv.Kafka(b)
	topic := testenv.Topics(b, brokers, 3, "outbox-hop")[0]
	startRelay(b, outbox.RelayConfig{Pool: pool, Publisher: newWriter(b, brokers), Registerer: prometheus.NewRegistry()})
	ctx := context.Background()
	writeEvents(b, ctx, pool, topic, newEvent(b, "warm-up"))
	waitDrained(b, pool)
	var hops []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		writeEvents(b, ctx, pool, topic, newEvent(b, fmt.Sprintf("key-%d", i%50)))
		for {
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		hops = append(hops, time.Since(start))
	}
	slices.Sort(hops)
	b.ReportMetric(float64(hops[len(hops)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(hops[len(hops)*99/100].Microseconds())/1000, "p99-ms")
}
