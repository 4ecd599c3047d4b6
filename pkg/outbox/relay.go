package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
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
}

const (
	defaultBatchSize    = 500
	defaultPollInterval = time.Second
	minBackoff          = 100 * time.Millisecond
	maxBackoff          = 5 * time.Second
	// statsInterval bounds how often a relay working through a backlog
	// counts the pending rows: the count scans the table.
	statsInterval = time.Second
	// shutdownGrace bounds how long a stopping relay waits for the batch it
	// is publishing.
	shutdownGrace = 5 * time.Second
	// deleteTimeout bounds the delete of a published batch, which runs even
	// when the relay is being stopped: finishing it spares the consumers a
	// batch of duplicates.
	deleteTimeout = 5 * time.Second

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
		r.log.WarnContext(ctx, "outbox relay interrupted", "err", err, "retry_in", d)
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

	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
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
// interval until it holds it.
func (r *Relay) waitForLeaderLock(ctx context.Context, conn *pgx.Conn, schema string) error {
	standby := false
	for {
		var leader bool
		if err := conn.QueryRow(ctx, leaderLockSQL).Scan(&leader); err != nil {
			return fmt.Errorf("try outbox leader lock of %s: %w", schema, err)
		}
		if leader {
			return nil
		}
		if !standby {
			r.log.InfoContext(ctx, "outbox relay standing by", "schema", schema)
			standby = true
		}
		if !sleep(ctx, r.pollInterval) {
			return ctx.Err()
		}
	}
}

// publishLoop runs rounds on conn, which holds the leader lock, so a broken
// connection, and with it lost leadership, stops the loop at the next query.
// A batch Kafka refused is retried with a growing delay; a full batch is
// followed by the next one at once; otherwise the loop waits for a commit.
func (r *Relay) publishLoop(ctx context.Context, conn *pgx.Conn, channel string) error {
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen on %s: %w", channel, err)
	}
	var b backoff
	var lastStats time.Time
	for {
		// Notifications received so far are for commits the next round sees.
		drainNotifications(conn)
		n, err := r.round(ctx, conn, &lastStats)
		var perr *publishError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &perr):
			d := b.next()
			r.log.ErrorContext(perr.logCtx, "outbox batch not published", "err", perr.err, "rows", perr.rows, "retry_in", d)
			if !sleep(ctx, d) {
				return nil
			}
			continue
		case err != nil:
			return err
		}
		b.reset()
		if n == r.batchSize {
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
// for the poll interval. It fails only when the connection does.
func (r *Relay) waitForCommit(ctx context.Context, conn *pgx.Conn, channel string) error {
	wctx, cancel := context.WithTimeout(ctx, r.pollInterval)
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

type publishError struct {
	err    error
	rows   int
	logCtx context.Context // of the first failed message: its trace and ids
}

func (e *publishError) Error() string {
	return fmt.Sprintf("publish %d outbox rows: %v", e.rows, e.err)
}
func (e *publishError) Unwrap() error { return e.err }

// round publishes the oldest pending rows with one WriteMessages call and
// deletes them. It reads every row still in the table rather than the rows
// after the last id it saw: a transaction that drew a smaller id may commit
// after one with a larger id, and a cursor would skip it.
func (r *Relay) round(ctx context.Context, conn *pgx.Conn, lastStats *time.Time) (int, error) {
	batch, err := r.readBatch(ctx, conn)
	if err != nil {
		return 0, err
	}
	if len(batch) > 0 {
		if err := r.publish(ctx, batch); err != nil {
			r.refreshStats(ctx, conn, lastStats, true)
			return 0, err
		}
		if err := deletePublished(ctx, conn, batch); err != nil {
			return 0, err
		}
	}
	r.refreshStats(ctx, conn, lastStats, len(batch) == r.batchSize)
	return len(batch), nil
}

// readBatch returns up to batchSize pending rows in id order, which is commit
// order per key (see Write).
func (r *Relay) readBatch(ctx context.Context, conn *pgx.Conn) ([]row, error) {
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

// publish sends batch in one call, each message in a producer span that is a
// child of the trace recorded by Write and the parent of the consumers' spans.
// It returns a *publishError when Kafka did not take the whole batch.
func (r *Relay) publish(ctx context.Context, batch []row) error {
	msgs := make([]kafka.Message, len(batch))
	spans := make([]producerSpan, len(batch))
	for i, rw := range batch {
		spans[i], msgs[i] = r.startProducerSpan(ctx, rw)
	}
	res := r.write(ctx, msgs)
	for i, s := range spans {
		s.end(res.of(i))
	}
	if res.err != nil {
		r.m.publishErrors.Inc()
		return res.publishError(batch, spans)
	}
	for _, rw := range batch {
		r.m.published.WithLabelValues(rw.topic).Inc()
	}
	return nil
}

// producerSpan is the span of one message's publication and the context
// holding it, which the relay's log lines about that message use.
type producerSpan struct {
	ctx  context.Context
	span trace.Span
}

// startProducerSpan starts the span of rw's publication as a child of the
// trace context Write stored in the envelope (a new root if it stored none)
// and returns it with the message, whose envelope now carries the span's own
// context to the consumers.
func (r *Relay) startProducerSpan(ctx context.Context, rw row) (producerSpan, kafka.Message) {
	prop := propagation.TraceContext{}
	e := rw.env
	parent := prop.Extract(ctx, propagation.MapCarrier{
		events.HeaderTraceParent: e.TraceParent,
		events.HeaderTraceState:  e.TraceState,
	})
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKafka,
			semconv.MessagingDestinationName(rw.topic),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("publish"),
			semconv.MessagingMessageID(e.ID),
			telemetry.OrderID.String(e.Subject),
		),
	}
	if !trace.SpanContextFromContext(parent).IsValid() {
		opts = append(opts, trace.WithNewRoot())
	}
	sctx, span := r.tracer.Start(parent, rw.topic+" publish", opts...)
	carrier := propagation.MapCarrier{}
	prop.Inject(sctx, carrier)
	e.TraceParent = carrier.Get(events.HeaderTraceParent)
	e.TraceState = carrier.Get(events.HeaderTraceState)
	return producerSpan{ctx: sctx, span: span}, events.ToMessage(rw.topic, e)
}

// end ends the span, recording err, the outcome of its message, if any.
func (s producerSpan) end(err error) {
	if err != nil {
		s.span.RecordError(err)
		s.span.SetStatus(codes.Error, err.Error())
	}
	s.span.End()
}

// write sends msgs in one WriteMessages call and times it. Kafka-level
// retries are the publisher's; the relay retries a failed batch as a whole.
func (r *Relay) write(ctx context.Context, msgs []kafka.Message) writeResult {
	// A relay being stopped lets the batch in flight finish, for a while:
	// cut short, the batch may reach Kafka anyway and is published again by
	// the next leader.
	wctx, cancel := withGrace(ctx, shutdownGrace)
	defer cancel()
	start := time.Now()
	err := r.pub.WriteMessages(wctx, msgs...)
	r.m.publishDuration.Observe(time.Since(start).Seconds())
	return newWriteResult(err, len(msgs))
}

// withGrace returns a context that outlives ctx by grace: it is cancelled
// grace after ctx is done, or when the returned cancel is called.
func withGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-gctx.Done():
		}
	})
	return gctx, func() {
		stop()
		cancel()
	}
}

// writeResult is the outcome of one WriteMessages call of n messages.
type writeResult struct {
	err  error
	n    int
	each kafka.WriteErrors // each message's error, when err gives them
}

func newWriteResult(err error, n int) writeResult {
	res := writeResult{err: err, n: n}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == n {
		res.each = werrs
	}
	return res
}

// of returns the error of message i: its own, or the call's when the call
// failed as a whole.
func (w writeResult) of(i int) error {
	if w.each != nil {
		return w.each[i]
	}
	return w.err
}

// firstFailed returns the index of the first message that failed.
func (w writeResult) firstFailed() int {
	for i, err := range w.each {
		if err != nil {
			return i
		}
	}
	return 0
}

// publishError returns the failed write as the relay logs it: with the
// context of the first failed message (its trace and ids) and, since
// kafka.WriteErrors prints every message's error, only the count and the
// first one.
func (w writeResult) publishError(batch []row, spans []producerSpan) *publishError {
	i := w.firstFailed()
	err := w.err
	if w.each != nil {
		err = fmt.Errorf("%d of %d messages not written, first: %w", w.each.Count(), w.n, w.each[i])
	}
	e := batch[i].env
	logCtx := telemetry.WithLogAttrs(spans[i].ctx,
		slog.String(telemetry.LogOrderID, e.Subject), slog.String(telemetry.LogEventID, e.ID))
	return &publishError{err: err, rows: len(batch), logCtx: logCtx}
}

// refreshStats updates the pending gauges, at most once per statsInterval
// while backlogged, since the count scans the table.
func (r *Relay) refreshStats(ctx context.Context, conn *pgx.Conn, last *time.Time, backlogged bool) {
	if backlogged && time.Since(*last) < statsInterval {
		return
	}
	var pending int64
	var age float64
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

type metrics struct {
	pending         prometheus.Gauge
	oldestAge       prometheus.Gauge
	published       *prometheus.CounterVec
	publishErrors   prometheus.Counter
	publishDuration prometheus.Histogram
}

// newMetrics registers the relay's metrics on reg. Relays sharing reg share
// the metrics: registering a collector twice returns the first one.
func newMetrics(reg prometheus.Registerer, log *slog.Logger) metrics {
	m := metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_pending_rows",
			Help: "Outbox rows not yet published, as last counted by the leading relay.",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outbox_oldest_pending_age_seconds",
			Help: "Age of the oldest outbox row not yet published.",
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_published_total",
			Help: "Outbox events published to Kafka (re-publications after a failure included).",
		}, []string{"topic"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outbox_publish_errors_total",
			Help: "Outbox batches Kafka did not accept; each is retried.",
		}),
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outbox_publish_duration_seconds",
			Help:    "Time to publish one outbox batch to Kafka.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	if reg == nil {
		return m
	}
	m.pending = register(reg, m.pending, log)
	m.oldestAge = register(reg, m.oldestAge, log)
	m.published = register(reg, m.published, log)
	m.publishErrors = register(reg, m.publishErrors, log)
	m.publishDuration = register(reg, m.publishDuration, log)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Error("outbox metric not registered", "err", err)
	return c
}

func (m metrics) clearPending() {
	m.pending.Set(0)
	m.oldestAge.Set(0)
}
