package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// Publisher sends messages to Kafka; *kafka.Writer satisfies it. It must
// keep the order of the messages of one key within one call, as a writer from
// broker.NewWriter does while one call's messages for a partition fit in one
// produce batch (the relay's BatchSize stays below the writer's).
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// RelayConfig configures a Relay. Pool and Publisher are required.
type RelayConfig struct {
	Pool           *pgxpool.Pool
	Publisher      Publisher
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider  // nil = noop
	Registerer     prometheus.Registerer // nil = no metrics
	BatchSize      int                   // default 500
	PollInterval   time.Duration         // fallback poll, default 1s
	// UnknownTopicGrace is how long a topic Kafka does not know may stay
	// unknown before its rows are dead letters: longer than a topic's
	// creation and the writer's metadata refresh take. Default 1 minute.
	UnknownTopicGrace time.Duration
}

// Relay publishes the outbox rows of the schema its pool's connections use.
// Any number of relays may run for one schema: one leads and publishes, the
// others wait to take over.
type Relay struct {
	pool         *pgxpool.Pool
	pub          Publisher
	log          *slog.Logger
	tracer       trace.Tracer
	batchSize    int
	pollInterval time.Duration
	m            metrics

	unknownTopicGrace time.Duration
	goneSince         map[string]time.Time // topics found unknown, since when
}

const (
	defaultBatchSize    = 500
	defaultPollInterval = time.Second
	defaultUnknownGrace = time.Minute
	minBackoff          = 100 * time.Millisecond
	// maxBackoff is 1 s, not more: a retry costs one query or one
	// produce, and a relay that backed off to 5 s during a broker or
	// database restart published up to 5 s after it was back.
	maxBackoff = time.Second
	// statsInterval bounds how often a relay counts the pending rows: the
	// count scans the table.
	statsInterval = time.Second
	// shutdownGrace bounds how long a stopping relay waits for the batch it
	// is publishing.
	shutdownGrace = 5 * time.Second
	// deleteTimeout bounds the delete of a published batch, which runs even
	// when the relay is being stopped: finishing it spares the consumers a
	// batch of duplicates.
	deleteTimeout = 5 * time.Second

	// The leader's lease. The leader lock is a session lock, released when
	// its connection ends; a connection that goes silent (a host that
	// vanished, a network that drops everything) would otherwise hold it
	// until TCP gives up, which with default keepalives takes two hours. So
	// the relay's connection is one PostgreSQL ends when it has been idle
	// for leaseIdle, and a relay runs a query on it at least every
	// leaseHeartbeat (a round, or a lock attempt when standing by), each
	// answered within leaseQueryTimeout or the relay steps down. A silent
	// leader is then replaced within leaseIdle plus a standby's poll: its
	// session ends leaseIdle after its last query, freeing the lock. Between
	// two of its queries a leader spends at most kafkaBudget on Kafka, so
	// leaseIdle leaves a healthy leader twice that: a slow moment of a busy
	// machine does not cost the lease, and a query slower than
	// leaseQueryTimeout costs only a handover (the relay closes its
	// connection, releasing the lock at once, and tries again).
	leaseIdle         = 8 * time.Second
	leaseHeartbeat    = time.Second
	leaseQueryTimeout = 3 * time.Second
	kafkaBudget       = 4 * time.Second

	// leaseSQL sets the lease's idle limit on the relay's connection
	// (PostgreSQL 14 and later); tcpSQL sets TCP keepalives and a user
	// timeout, so that the server also drops a peer that stopped
	// acknowledging within seconds.
	leaseSQL = `SET idle_session_timeout = '8s'`
	tcpSQL   = `SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3; SET tcp_user_timeout = 8000`

	leaderLockSQL = `SELECT pg_try_advisory_lock(hashtextextended('outbox_' || current_schema(), 0))`
	selectSQL     = `SELECT id, topic, envelope FROM outbox ORDER BY id LIMIT $1`
	deleteSQL     = `DELETE FROM outbox WHERE id = ANY($1)`
	statsSQL      = `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM outbox`
)

// NewRelay returns a relay; Run starts it.
func NewRelay(cfg RelayConfig) *Relay {
	r := &Relay{
		pool:         cfg.Pool,
		pub:          cfg.Publisher,
		log:          cfg.Logger,
		batchSize:    cfg.BatchSize,
		pollInterval: cfg.PollInterval,

		unknownTopicGrace: cfg.UnknownTopicGrace,
		goneSince:         map[string]time.Time{},
	}
	if r.unknownTopicGrace <= 0 {
		r.unknownTopicGrace = defaultUnknownGrace
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	r.tracer = tp.Tracer("github.com/sagashop/sagashop/pkg/outbox")
	if r.batchSize <= 0 {
		r.batchSize = defaultBatchSize
	}
	if r.pollInterval <= 0 {
		r.pollInterval = defaultPollInterval
	}
	r.m = newMetrics(cfg.Registerer, r.log)
	return r
}

// Run publishes until ctx is done, then returns nil. It returns an error only
// when the relay is misconfigured; database and Kafka failures are logged
// and retried.
func (r *Relay) Run(ctx context.Context) error {
	if r.pool == nil || r.pub == nil {
		return errors.New("outbox relay: pool and publisher are required")
	}
	b := backoff{}
	for {
		led, err := r.lead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// A leader that loses its connection reconnects at once; only
		// repeated failures to get one back slow down.
		if led {
			b.reset()
		}
		d := b.next()
		r.log.WarnContext(ctx, "outbox relay interrupted", telemetry.Err(err), "retry_in", d)
		if !sleep(ctx, d) {
			return nil
		}
	}
}

// lead takes a dedicated connection out of the pool, waits until it holds
// the schema's leader lock, then publishes until ctx is done or the
// connection fails. Closing the connection releases the lock, so a relay that
// dies hands leadership over without any cleanup. It reports whether it led.
func (r *Relay) lead(ctx context.Context) (bool, error) {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquire relay connection: %w", err)
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()

	qctx, cancel := leaseContext(ctx)
	defer cancel()
	if _, err := conn.Exec(qctx, tcpSQL); err != nil {
		return false, fmt.Errorf("set up relay connection: %w", err)
	}
	if _, err := conn.Exec(qctx, leaseSQL); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42704" { // undefined_object: before PostgreSQL 14
			return false, fmt.Errorf("set up relay connection: %w", err)
		}
		r.log.WarnContext(ctx, "outbox relay without a lease: PostgreSQL before 14 has no idle_session_timeout, "+
			"so a leader whose host vanished holds the lock until TCP gives up", telemetry.Err(err))
	}
	var schema string
	if err := conn.QueryRow(qctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return false, fmt.Errorf("read current schema: %w", err)
	}
	if err := r.waitForLeaderLock(ctx, conn, schema); err != nil {
		return false, err
	}
	r.log.InfoContext(ctx, "outbox relay leading", "schema", schema)
	defer r.m.clearPending()
	return true, r.publishLoop(ctx, conn, "outbox_"+schema)
}

// waitForLeaderLock tries the leader lock of schema on conn every poll
// interval (at most leaseHeartbeat) until it holds it.
func (r *Relay) waitForLeaderLock(ctx context.Context, conn *pgx.Conn, schema string) error {
	standby := false
	for {
		var leader bool
		qctx, cancel := leaseContext(ctx)
		err := conn.QueryRow(qctx, leaderLockSQL).Scan(&leader)
		cancel()
		if err != nil {
			return fmt.Errorf("try outbox leader lock of %s: %w", schema, err)
		}
		if leader {
			return nil
		}
		if !standby {
			r.log.InfoContext(ctx, "outbox relay standing by", "schema", schema)
			standby = true
		}
		if !sleep(ctx, min(r.pollInterval, leaseHeartbeat)) {
			return ctx.Err()
		}
	}
}

// leaseContext bounds a query on the relay's connection: a connection that
// does not answer within leaseQueryTimeout has lost the lease.
func leaseContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, leaseQueryTimeout)
}

// publishLoop runs rounds on conn, which holds the leader lock, so a broken
// connection, and with it lost leadership, stops the loop at the next query.
// A batch Kafka refused is retried with a growing delay; a full batch is
// followed by the next one at once; otherwise the loop waits for a commit.
func (r *Relay) publishLoop(ctx context.Context, conn *pgx.Conn, channel string) error {
	lctx, cancel := leaseContext(ctx)
	_, err := conn.Exec(lctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	cancel()
	if err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	var b backoff
	var lastStats time.Time
	for {
		// Notifications received so far are for commits the next round sees.
		drainNotifications(conn)
		again, err := r.round(ctx, conn, &lastStats)
		var perr *publishError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &perr):
			d := b.next()
			r.log.ErrorContext(perr.logCtx, "outbox batch not published", telemetry.Err(perr.err), "rows", perr.rows, "retry_in", d)
			if !sleep(ctx, d) {
				return nil
			}
			continue
		case err != nil:
			return err
		}
		b.reset()
		if again {
			continue
		}
		err = r.waitForCommit(ctx, conn, channel)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// waitForCommit waits for a notification on conn or, in case one was missed,
// for the poll interval, at most leaseHeartbeat: the round that follows is
// the lease's heartbeat. It fails only when the connection does.
func (r *Relay) waitForCommit(ctx context.Context, conn *pgx.Conn, channel string) error {
	wctx, cancel := context.WithTimeout(ctx, min(r.pollInterval, leaseHeartbeat))
	defer cancel()
	_, err := conn.WaitForNotification(wctx)
	if err != nil && wctx.Err() == nil {
		return fmt.Errorf("wait for notification on %s: %w", channel, err)
	}
	return nil
}

// drainNotifications discards the notifications pgx has buffered, without
// reading from the connection: a cancelled context makes WaitForNotification
// return the buffered ones and then fail at once.
func drainNotifications(conn *pgx.Conn) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		if _, err := conn.WaitForNotification(done); err != nil {
			return
		}
	}
}

type row struct {
	id    int64
	topic string
	env   events.Envelope
}

// round publishes the oldest pending rows with one WriteMessages call,
// deletes those Kafka took and moves those it refused for good to the dead
// letters (see DeadLetterSchema). It reports whether the next round should
// run at once: the batch was full, or rows were held back by a dead one. It
// reads every row still in the table rather than the rows after the last id
// it saw: a transaction that drew a smaller id may commit after one with a
// larger id, and a cursor would skip it.
func (r *Relay) round(ctx context.Context, conn *pgx.Conn, lastStats *time.Time) (bool, error) {
	batch, err := r.readBatch(ctx, conn)
	if err != nil {
		return false, err
	}
	if len(batch) == 0 {
		// Nothing committed is pending: the gauges need no query.
		r.m.pending.Set(0)
		r.m.oldestAge.Set(0)
		return false, nil
	}
	out := r.publish(ctx, batch)
	if len(out.published) > 0 {
		if err := deletePublished(ctx, conn, out.published); err != nil {
			return false, err
		}
	}
	if len(out.dead) > 0 {
		if err := r.moveToDeadLetters(ctx, conn, out.dead); err != nil {
			return false, err
		}
	}
	r.refreshStats(ctx, conn, lastStats)
	if out.failed != nil {
		return false, out.failed
	}
	return len(batch) == r.batchSize || out.again || len(out.dead) > 0, nil
}

// readBatch returns up to batchSize pending rows in id order, which is commit
// order per key (see Write).
func (r *Relay) readBatch(ctx context.Context, conn *pgx.Conn) ([]row, error) {
	ctx, cancel := leaseContext(ctx)
	defer cancel()
	rows, err := conn.Query(ctx, selectSQL, r.batchSize)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var rw row
		err := cr.Scan(&rw.id, &rw.topic, &rw.env)
		return rw, err
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return batch, nil
}

// deletePublished deletes the rows of a published batch. It runs even when
// the relay is being stopped, for up to deleteTimeout; rows it fails to
// delete are published again: at-least-once.
func deletePublished(ctx context.Context, conn *pgx.Conn, batch []row) error {
	ids := make([]int64, len(batch))
	for i, rw := range batch {
		ids[i] = rw.id
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	if _, err := conn.Exec(dctx, deleteSQL, ids); err != nil {
		return fmt.Errorf("delete %d published outbox rows: %w", len(ids), err)
	}
	return nil
}

// refreshStats updates the pending gauges, at most once per statsInterval,
// since the count scans the table: counting after every round of a relay
// publishing an event or two at a time cost it a round trip and a scan per
// event (an empty round sets them to zero without a query).
func (r *Relay) refreshStats(ctx context.Context, conn *pgx.Conn, last *time.Time) {
	if time.Since(*last) < statsInterval {
		return
	}
	var pending int64
	var age float64
	ctx, cancel := leaseContext(ctx)
	defer cancel()
	if err := conn.QueryRow(ctx, statsSQL).Scan(&pending, &age); err != nil {
		// The next query on conn reports a broken connection; a stale
		// gauge is all this costs.
		return
	}
	*last = time.Now()
	r.m.pending.Set(float64(pending))
	r.m.oldestAge.Set(age)
}

// backoff is an exponential delay from minBackoff to maxBackoff.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = minBackoff
	} else {
		b.d = min(2*b.d, maxBackoff)
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

// sleep waits d or until ctx is done, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
