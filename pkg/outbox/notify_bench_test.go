package outbox

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/testenv"
)

// BenchmarkCommitNotify measures what the NOTIFY in Write costs its writers:
// concurrent transactions (8 goroutines) each writing one outbox row the way
// Write does (key lock, insert), with and without the pg_notify, each a
// durable commit. PostgreSQL serialises the commits of notifying
// transactions (they take a database-wide lock through the commit's flush),
// so they cannot share a WAL flush. docs/BENCHMARKS.md has the figures.
func BenchmarkCommitNotify(b *testing.B) {
	pool, _ := testenv.Postgres(b)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, Schema); err != nil {
		b.Fatal(err)
	}
	for _, notify := range []bool{true, false} {
		b.Run(fmt.Sprintf("notify=%t", notify), func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					batch := &pgx.Batch{}
					key := fmt.Sprintf("key-%d", i%100)
					batch.Queue(keyLockSQL, key)
					batch.Queue(insertSQL, uuid.New(), "bench", key, []byte(`{}`))
					if notify {
						batch.Queue(notifySQL)
					}
					err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, batch).Close() })
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			if _, err := pool.Exec(ctx, `TRUNCATE outbox`); err != nil {
				b.Fatal(err)
			}
		})
	}
}
