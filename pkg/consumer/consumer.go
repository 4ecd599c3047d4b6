// Package consumer is the idempotent Kafka consumer every Sagashop service
// uses: it reads a consumer group's topics, runs the handler for each event
// type inside one PostgreSQL transaction together with an inbox record, and
// commits the Kafka offset only after that transaction has committed.
//
// Guarantees:
//   - At-least-once delivery: an offset is committed only after the message's
//     transaction (or its dead-letter write) has committed, so a crash
//     redelivers (the last ~100 ms of messages) rather than loses.
//   - Effects are applied once per event id: the inbox row (processed_events)
//     is written in the same transaction as the handler's effects, and a
//     redelivered event finds it and is skipped.
//   - Per-partition order is preserved: messages are applied in fetch order
//     (a batch of them in one transaction, see Config.BatchSize), and a
//     failing message is retried, alone, never passed by a later one of its
//     partition, until it succeeds or is dead-lettered.
//   - A failure stalls only its own partition: a message whose failure will
//     be retried (a transient error, an unclassified one below MaxAttempts,
//     a newer schema version) parks its partition. A goroutine of the
//     partition's own (its lane) retries the message, then applies the
//     partition's messages fetched meanwhile, in order, and commits their
//     offsets; once it has caught up, the partition is unparked and flows
//     through the main loop again. The other partitions keep flowing
//     meanwhile. A lane holds at most Config.ParkedMessages messages; when
//     it is full the whole consumer waits (back-pressure), so memory stays
//     bounded. A rebalance may move a parked partition to another member
//     while its lane still works (kafka-go's group reader does not say when
//     partitions move): both may then apply the same messages, which the
//     inbox (one database per group) makes harmless, and the lane's late
//     commits may move the group's offset back, which costs redeliveries
//     that the inbox skips.
//   - An event of a schema version newer than this build knows (a producer
//     already upgraded, in a rolling deploy) is retried, on its partition's
//     lane, for Config.UnknownVersionWait, and only then dead-lettered with
//     reason unknown_version.
//   - Lost messages are never silent: when the group's offset has fallen
//     out of the topic's retention and the reader jumps to the first offset
//     still there, the jump is logged at ERROR and counted
//     (consumer_offsets_skipped_total), and consumer_lag counts from the
//     committed offset, not from the log start.
//   - Poison messages are dead-lettered: a message that cannot be decoded, or
//     whose handler fails permanently or too often, goes to
//     events.DeadLetterTopic(group) with headers saying why, and the group
//     moves on.
//   - Only events that travelled their route are applied: the topics a
//     consumer reads are those its handlers' event types travel on
//     (events.Routes), and an event on another topic, or from a service that
//     does not produce its type, is dead-lettered with reason
//     unexpected_source, never applied.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// Handler applies one event inside tx. Its effects commit together with the
// inbox record, so it runs at most once per event id to completion. Return an
// error wrapping ErrPermanent (see Permanent) for an event that can never
// succeed; PostgreSQL connection, serialization, deadlock and lock errors are
// retried; other errors are retried up to Config.MaxAttempts times.
type Handler func(ctx context.Context, tx pgx.Tx, e events.Envelope) error

// Publisher writes messages to Kafka; *kafka.Writer is one.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Config is what a Consumer needs. Brokers, Group, Handlers and Pool are
// required.
type Config struct {
	Brokers []string
	Group   string
	// Handlers by event type. The consumer reads the topics these types
	// travel on (Routes) and skips other types it finds there.
	Handlers map[string]Handler
	Pool     *pgxpool.Pool
	// Routes says which topic and source each event type has; nil means
	// events.Saga(). Every handled type needs a route.
	Routes events.Routes

	// DeadLetter writes to events.DeadLetterTopic(Group); nil means
	// broker.NewWriter(Brokers), closed when Run returns.
	DeadLetter Publisher
	// DeadLetterTopic is how the dead-letter topic is created when it is
	// missing (replication factor, retention); its Name is ignored. Zero
	// means events.Partitions partitions, replication factor 1 and the
	// broker's retention.
	DeadLetterTopic broker.TopicSpec

	Logger         *slog.Logger          // nil discards
	TracerProvider trace.TracerProvider  // nil = noop
	Registerer     prometheus.Registerer // nil = no metrics
	MaxAttempts    int                   // attempts for unclassified errors before dead-lettering; default 10
	MinBackoff     time.Duration         // first retry delay; default 50ms
	MaxBackoff     time.Duration         // retry delay cap; default 5s

	// BatchSize is the most messages applied in one transaction: after a
	// fetch, the consumer also takes the messages already fetched (see
	// BatchWait), up to BatchSize, and applies them together, so that they
	// share one commit flush. A batch whose transaction fails is rolled back
	// and its messages go through one transaction each, with the usual
	// retries and dead-lettering. Default 100; 1 applies every message in
	// a transaction of its own.
	BatchSize int
	// BatchWait is how long collecting a batch waits for one more message;
	// default 200µs. Messages that are not there by then go in the next
	// batch: under load they pile up while a batch is applied, so batches
	// grow with the load without adding latency when it is light.
	BatchWait time.Duration

	// UnknownVersionWait is how long a message whose schema version is
	// newer than this build knows (events.ErrNewerVersion) is retried,
	// counted from its first failure, before it is dead-lettered with reason
	// unknown_version: long enough for a rolling deploy to upgrade this
	// consumer. Default 15 minutes; the message's partition waits meanwhile,
	// the others do not.
	UnknownVersionWait time.Duration
	// ParkedMessages is the most messages a parked partition's lane queues
	// (its messages fetched while the failing one is retried; those of the
	// batch it failed in come on top); when a lane is full, the consumer
	// stops handling fetched messages until it has room. Default 10,000.
	ParkedMessages int

	// InboxRetention is how long processed event ids are kept to recognise
	// redeliveries; default 7 days, far beyond any redelivery (a redelivery
	// comes from an uncommitted offset or a relay republishing, within
	// minutes) and beyond the topics' retention.
	InboxRetention time.Duration
}

const (
	defaultMaxAttempts = 10
	defaultMinBackoff  = 50 * time.Millisecond
	defaultMaxBackoff  = 5 * time.Second
	// maxFetchBackoff caps the wait between failed fetches (a broker
	// restart): retrying a fetch costs nothing, and at 5 s the consumer
	// could sleep through most of the broker's return.
	maxFetchBackoff    = time.Second
	defaultLagInterval = 5 * time.Second
	defaultRetention   = 7 * 24 * time.Hour
	defaultBatchSize   = 100
	defaultBatchWait   = 200 * time.Microsecond
	defaultNewerWait   = 15 * time.Minute
	defaultParked      = 10_000
	pruneInterval      = time.Hour

	// commitTimeout bounds queueing an offset, which waits while the group
	// rebalances. It applies even when Run's context is cancelled: the
	// transaction is already committed, and a committed offset spares the
	// next owner a redelivery.
	commitTimeout = 10 * time.Second

	tracerName = "github.com/sagashop/sagashop/pkg/consumer"
)

// Consumer reads one consumer group's topics; see the package doc for what it
// guarantees.
type Consumer struct {
	cfg         Config
	topics      []string // derived from the handlers' routes
	routes      events.Routes
	log         *slog.Logger
	tracer      trace.Tracer
	propagator  propagation.TextMapPropagator
	metrics     *metrics
	dlqTopic    string
	lagInterval time.Duration
}

// New checks cfg, fills in defaults and registers the metrics. It opens no
// connection: Run does.
func New(cfg Config) (*Consumer, error) {
	var problems []error
	if len(cfg.Brokers) == 0 {
		problems = append(problems, errors.New("no brokers"))
	}
	if cfg.Group == "" {
		problems = append(problems, errors.New("no group"))
	}
	if len(cfg.Handlers) == 0 {
		problems = append(problems, errors.New("no handlers"))
	}
	for _, typ := range slices.Sorted(maps.Keys(cfg.Handlers)) {
		if cfg.Handlers[typ] == nil {
			problems = append(problems, fmt.Errorf("nil handler for %s", typ))
		}
	}
	if cfg.Routes == nil {
		cfg.Routes = events.Saga()
	}
	topics, err := cfg.Routes.Topics(slices.Sorted(maps.Keys(cfg.Handlers))...)
	if err != nil && len(cfg.Handlers) > 0 {
		problems = append(problems, err)
	}
	if cfg.Pool == nil {
		problems = append(problems, errors.New("no database pool"))
	}
	if cfg.MaxAttempts < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 {
		problems = append(problems, errors.New("negative max attempts or backoff"))
	}
	if cfg.BatchSize < 0 || cfg.BatchWait < 0 {
		problems = append(problems, errors.New("negative batch size or wait"))
	}
	if cfg.UnknownVersionWait < 0 {
		problems = append(problems, errors.New("negative unknown version wait"))
	}
	if cfg.ParkedMessages < 0 {
		problems = append(problems, errors.New("negative parked messages"))
	}
	if cfg.UnknownVersionWait == 0 {
		cfg.UnknownVersionWait = defaultNewerWait
	}
	if cfg.ParkedMessages == 0 {
		cfg.ParkedMessages = defaultParked
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = defaultBatchSize
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = defaultBatchWait
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = defaultMaxAttempts
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.InboxRetention <= 0 {
		cfg.InboxRetention = defaultRetention
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.MinBackoff > cfg.MaxBackoff {
		problems = append(problems, fmt.Errorf("min backoff %s above max backoff %s", cfg.MinBackoff, cfg.MaxBackoff))
	}
	if len(problems) == 0 {
		// kafka.NewReader panics on a bad config; find out here instead.
		rc := readerConfig(cfg, topics, nil)
		if err := rc.Validate(); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("consumer config: %w", errors.Join(problems...))
	}

	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	cfg.Handlers = maps.Clone(cfg.Handlers) // the caller's map may change after New
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("consumer metrics: %w", err)
	}
	return &Consumer{
		cfg:         cfg,
		topics:      topics,
		routes:      maps.Clone(cfg.Routes),
		log:         log.With(telemetry.LogGroup, cfg.Group),
		tracer:      tp.Tracer(tracerName),
		propagator:  propagation.TraceContext{},
		metrics:     m,
		dlqTopic:    events.DeadLetterTopic(cfg.Group),
		lagInterval: defaultLagInterval,
	}, nil
}

// readerConfig sets every kafka-go Reader setting whose default is wrong for
// us: MaxWait (10 s), HeartbeatInterval and SessionTimeout (3 s and 30 s,
// slow rebalances), CommitInterval (0, a synchronous commit per message) and
// ReadLagInterval (meaningless with a group).
func readerConfig(cfg Config, topics []string, log *slog.Logger) kafka.ReaderConfig {
	rc := kafka.ReaderConfig{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.Group,
		GroupTopics: topics,
		// A new group starts at the beginning: events produced before a
		// service first started are still its input.
		StartOffset: kafka.FirstOffset,
		// How long the broker holds a fetch on an idle partition; a message
		// arriving meanwhile is answered at once, so this costs no latency.
		// kafka-go gives the broker MaxWait less a quarter of it (at most
		// 1 s) and times the read out at MaxWait: at 100 ms that slack was
		// 25 ms, which a busy machine often missed, and every miss cost the
		// partition an "i/o timeout" and a 100 ms-1 s backoff (the saga's
		// latency tail). At 2 s the slack is 1 s.
		MaxWait: 2 * time.Second,
		// Defaults of 3 s and 30 s make every rebalance, and noticing a dead
		// member, slow. A SIGKILLed member's partitions wait for its session
		// to time out (or, when its restart joins first, for the rebalance
		// to give up on it): 6 s is the broker's floor
		// (group.min.session.timeout.ms), six heartbeats. kafka-go's Reader
		// has no static membership (group.instance.id) nor incremental
		// rebalancing, so these timeouts are what there is to shorten;
		// Close leaves the group, so a SIGTERM costs one quick rebalance.
		// Measured with tools/chaos -single kill (docs/RELIABILITY.md).
		HeartbeatInterval: time.Second,
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  6 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		// Offsets are queued after each batch's transaction and committed
		// every 100 ms, and once more when the reader closes or the group
		// rebalances. Not a synchronous commit per message: one took ~7 ms
		// here (Kafka 4's group coordinator waits up to 5 ms,
		// group.coordinator.append.linger.ms, to batch commits), so
		// BenchmarkConsume (one consumer, 2000 messages) gave 130-140 msgs/s
		// with synchronous commits and 1100-1900 msgs/s with queued ones. The
		// cost: a crash redelivers up to 100 ms of messages, which the inbox
		// skips.
		CommitInterval: 100 * time.Millisecond,
		// The Reader's own lag is meaningless with a group; see reportLag.
		ReadLagInterval: -1,
	}
	if log != nil {
		rc.ErrorLogger = kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn("kafka reader error", telemetry.LogError, fmt.Sprintf(msg, args...))
		})
	}
	return rc
}

// Run consumes until ctx is cancelled, then closes the reader (leaving the
// group, so its partitions move on at once) and returns nil. Kafka and
// database outages are waited out, not returned. Run one at a time per
// Consumer.
func (c *Consumer) Run(ctx context.Context) error {
	dlq := c.cfg.DeadLetter
	if dlq == nil {
		// A transport of its own: kafka-go's shared default transport caches
		// metadata for up to 6 s, so it may not know the dead-letter topic
		// created just below, and it keeps connections a broker restart broke.
		tr := &kafka.Transport{}
		w := broker.NewWriter(c.cfg.Brokers)
		w.Transport = tr
		defer func() {
			if err := w.Close(); err != nil {
				c.log.Warn("close dead-letter writer", telemetry.Err(err))
			}
			tr.CloseIdleConnections()
		}()
		dlq = w
	}
	c.ensureDeadLetterTopic(ctx)

	lagDone := make(chan struct{})
	lagCtx, stopLag := context.WithCancel(ctx)
	defer func() { stopLag(); <-lagDone }()
	if c.cfg.Registerer != nil {
		go func() { defer close(lagDone); c.reportLag(lagCtx) }()
	} else {
		close(lagDone)
	}

	pruneDone := make(chan struct{})
	go func() { defer close(pruneDone); c.pruneLoop(lagCtx) }()
	defer func() { stopLag(); <-pruneDone }()

	// The offset watch's client: a transport of its own, like reportLag's.
	tr := &kafka.Transport{DialTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	watch := c.newOffsetWatch(&kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Timeout: offsetCheckTimeout, Transport: tr})

	r := kafka.NewReader(readerConfig(c.cfg, c.topics, c.log))
	lanes := c.newLanes(dlq, r)
	c.log.Info("consumer started", "topics", c.topics, "dead_letter_topic", c.dlqTopic,
		"unknown_version_wait", c.cfg.UnknownVersionWait, "parked_messages", c.cfg.ParkedMessages)
	fetchFailures := 0
	batch := make([]kafka.Message, 0, c.cfg.BatchSize)
	for {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// The reader reconnects and rejoins by itself; it reports errors
			// it keeps running into, which we only log and wait out.
			fetchFailures++
			c.log.Warn("fetch message", telemetry.Err(err))
			if !sleep(ctx, min(c.backoff(fetchFailures), maxFetchBackoff)) {
				break
			}
			continue
		}
		fetchFailures = 0
		watch.observe(msg)
		batch = append(batch[:0], msg)
		batch = c.collect(ctx, r, watch, batch)
		watch.verify(ctx)
		c.metrics.batchSize.WithLabelValues(c.cfg.Group).Observe(float64(len(batch)))
		if err := c.handle(ctx, lanes, batch); err != nil {
			// Only cancellation ends handling unfinished: the messages stay
			// uncommitted and are redelivered to whoever owns their
			// partitions.
			break
		}
	}
	// The lanes stop with ctx; their messages stay uncommitted too.
	lanes.wait()
	if err := r.Close(); err != nil {
		c.log.Warn("close reader", telemetry.Err(err))
	}
	c.log.Info("consumer stopped")
	return nil
}

// ensureDeadLetterTopic creates the group's dead-letter topic if missing: the
// broker does not create topics on first write, and a dead-letter write that
// cannot succeed would stall the group. A failure is logged, not fatal; the
// dead-letter write retries anyway.
func (c *Consumer) ensureDeadLetterTopic(ctx context.Context) {
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	spec := c.cfg.DeadLetterTopic
	spec.Name = c.dlqTopic
	if spec.Partitions == 0 {
		spec.Partitions = events.Partitions
	}
	if spec.ReplicationFactor == 0 {
		spec.ReplicationFactor = 1
	}
	if _, err := broker.CreateTopics(tctx, c.cfg.Brokers, spec); err != nil && ctx.Err() == nil {
		c.log.Warn("ensure dead-letter topic", telemetry.LogTopic, c.dlqTopic, telemetry.Err(err))
	}
}

// collect appends to batch the messages the reader has already fetched, up
// to BatchSize, waiting at most BatchWait for each. A fetch that times out
// loses nothing: the message stays queued in the reader for the next call.
func (c *Consumer) collect(ctx context.Context, r *kafka.Reader, watch *offsetWatch, batch []kafka.Message) []kafka.Message {
	for len(batch) < c.cfg.BatchSize {
		fctx, cancel := context.WithTimeout(ctx, c.cfg.BatchWait)
		msg, err := r.FetchMessage(fctx)
		cancel()
		if err != nil {
			if fctx.Err() == nil {
				// A reader error, not the end of the wait: Run's fetch
				// would have logged it.
				c.log.Warn("fetch message", telemetry.Err(err))
			}
			break
		}
		watch.observe(msg)
		batch = append(batch, msg)
	}
	return batch
}

// handle brings msgs, in fetch order, to outcomes that allow committing
// their offsets, and queues those offsets for commit. The messages of a
// parked partition go to its lane; a message that fails in a way that will
// be retried parks its partition (see handling). It returns an error only
// when ctx is done first; then nothing more is committed. A stopped lane's
// partition stays parked until Run returns, so no later message of it is
// committed past the lane's uncommitted ones.
func (c *Consumer) handle(ctx context.Context, lanes *lanes, msgs []kafka.Message) error {
	entries := c.prepare(ctx, msgs)
	mine := make([]*entry, 0, len(entries))
	h := &handling{c: c, dlq: lanes.dlq, lanes: lanes, parked: map[partition]struct{}{}}
	defer func() {
		// What did not reach an outcome (ctx ended) ends its span here;
		// the parked partitions' entries are their lanes'.
		for _, e := range mine {
			if e.it != nil && !h.isParked(partitionOf(e.msg)) {
				c.finish(e.it)
			}
		}
	}()
	for i, e := range entries {
		queued, dropped, err := lanes.enqueue(ctx, e)
		if err != nil {
			mine = append(mine, entries[i:]...)
			return err
		}
		switch {
		case dropped:
			// Its lane stopped with ctx: it stays uncommitted.
			if e.it != nil {
				c.finish(e.it)
			}
		case !queued:
			mine = append(mine, e)
		}
	}
	h.entries = mine
	if err := h.work(ctx); err != nil {
		return err
	}
	done := make([]kafka.Message, 0, len(mine))
	for _, e := range mine {
		if !h.isParked(partitionOf(e.msg)) {
			done = append(done, e.msg)
		}
	}
	c.commit(ctx, lanes.commits, done)
	return nil
}

// commit queues the offsets of msgs for the reader's next commit (see
// CommitInterval). A failure is logged and passed over: the effects are
// committed, so the worst outcome is a redelivery that the inbox skips, and
// the next messages' commit covers these.
func (c *Consumer) commit(ctx context.Context, r committer, msgs []kafka.Message) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := r.CommitMessages(ctx, msgs...); err != nil {
		last := msgs[len(msgs)-1]
		c.log.Warn("commit offsets", "messages", len(msgs), telemetry.LogTopic, last.Topic, telemetry.LogPartition, last.Partition,
			telemetry.LogOffset, last.Offset, telemetry.Err(err))
	}
}
