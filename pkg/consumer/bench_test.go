package consumer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// BenchmarkConsume measures end-to-end throughput of one consumer: fetch,
// one transaction (inbox + one insert), synchronous offset commit.
//
//	go test -run '^$' -bench Consume -benchtime 2000x ./pkg/consumer/
func BenchmarkConsume(b *testing.B) {
	s := newStack(b, events.Partitions)
	envs := make([]events.Envelope, b.N)
	for i := range envs {
		envs[i] = event(b, fmt.Sprintf("order-%d", i%50), i/50+1)
	}
	for i := 0; i < len(envs); i += 1000 {
		s.produceEvents(envs[i:min(i+1000, len(envs))]...)
	}
	b.ResetTimer()
	stop := s.start(s.config(map[string]consumer.Handler{typeAppended: appendEffect("c")}))
	var n int
	testenv.WaitFor(b, 5*time.Minute, "all effects", func() bool {
		_ = s.pool.QueryRow(context.Background(), `SELECT count(*) FROM effects`).Scan(&n)
		return n >= b.N
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	stop()
}
