package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/telemetry"
)

// WatchConfig is what Watch needs. Brokers, Group and Handle are required.
type WatchConfig struct {
	Brokers []string
	// Group is the watcher's own consumer group (e.g. "order.dlq-watch"); a
	// new group starts at the start of every dead-letter topic.
	Group string
	// Handle is called with each letter, at least once: Watch commits the
	// letter's offset only after Handle returned nil, and calls it again
	// after a failure (with backoff, never skipping the letter), so it must
	// be idempotent (Record is).
	Handle func(ctx context.Context, l Letter) error
	// Match selects the dead-letter topics to watch among those whose name
	// ends in .dlq; nil watches them all.
	Match func(topic string) bool
	// Refresh is how often the broker is asked for new dead-letter topics
	// (each consumer group creates its own when it starts); default 10 s.
	Refresh time.Duration
	Logger  *slog.Logger // nil discards
}

const (
	defaultRefresh = 10 * time.Second
	minBackoff     = 100 * time.Millisecond
	maxBackoff     = 10 * time.Second
)

// Watch consumes the dead-letter topics until ctx ends, then returns nil.
// kafka-go's group reader reads a set of topics fixed when it is created, so
// when the set changes Watch closes its reader (which commits and leaves the
// group) and opens one for the new set, which resumes at the committed
// offsets. Broker outages are waited out and logged, not returned; only a
// config error is.
func Watch(ctx context.Context, cfg WatchConfig) error {
	var problems []error
	if len(cfg.Brokers) == 0 {
		problems = append(problems, errors.New("no brokers"))
	}
	if cfg.Group == "" {
		problems = append(problems, errors.New("no group"))
	}
	if cfg.Handle == nil {
		problems = append(problems, errors.New("no handler"))
	}
	if cfg.Refresh < 0 {
		problems = append(problems, errors.New("negative refresh interval"))
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("dead-letter watch config: %w", err)
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = defaultRefresh
	}
	if cfg.Match == nil {
		cfg.Match = func(string) bool { return true }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &watcher{cfg: cfg, log: log.With(telemetry.LogGroup, cfg.Group)}
	return w.run(ctx)
}

type watcher struct {
	cfg WatchConfig
	log *slog.Logger
}

func (w *watcher) run(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		topics, err := w.topics(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			wait := backoff(failures)
			w.log.Warn("list dead-letter topics", telemetry.Err(err), telemetry.LogAttempt, failures, telemetry.LogBackoff, wait)
			sleep(ctx, wait)
			continue
		}
		failures = 0
		if len(topics) == 0 {
			sleep(ctx, w.cfg.Refresh)
			continue
		}
		w.consume(ctx, topics)
	}
	return nil
}

// topics lists the dead-letter topics Match selects, sorted.
func (w *watcher) topics(ctx context.Context) ([]string, error) {
	c, done := newClient(w.cfg.Brokers)
	defer done()
	infos, err := dlqTopics(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range infos {
		if w.cfg.Match(t.name) {
			out = append(out, t.name)
		}
	}
	return out, nil
}

// consume reads topics with one group reader until ctx ends or the set of
// dead-letter topics changes.
func (w *watcher) consume(ctx context.Context, topics []string) {
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	changed := make(chan struct{})
	go func() {
		defer close(changed)
		w.awaitChange(rctx, topics)
		stop()
	}()
	defer func() { stop(); <-changed }()

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     w.cfg.Brokers,
		GroupID:     w.cfg.Group,
		GroupTopics: topics,
		StartOffset: kafka.FirstOffset,
		MaxWait:     2 * time.Second,
		// The consumer's settings (pkg/consumer), for quick rebalances:
		// the reader is replaced whenever a dead-letter topic appears.
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  time.Second,
		// A synchronous commit per letter: letters are rare, and a
		// committed offset is what tells the next reader where to resume.
		CommitInterval:  0,
		ReadLagInterval: -1,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			w.log.Warn("kafka reader error", telemetry.LogError, fmt.Sprintf(msg, args...))
		}),
	})
	defer func() {
		if err := r.Close(); err != nil {
			w.log.Warn("close dead-letter reader", telemetry.Err(err))
		}
	}()
	w.log.Info("watching dead-letter topics", "topics", topics)
	failures := 0
	for {
		m, err := r.FetchMessage(rctx)
		if err != nil {
			if rctx.Err() != nil {
				return
			}
			failures++
			wait := backoff(failures)
			w.log.Warn("fetch dead letter", telemetry.Err(err), telemetry.LogAttempt, failures, telemetry.LogBackoff, wait)
			if !sleep(rctx, wait) {
				return
			}
			continue
		}
		failures = 0
		if !w.handle(ctx, Decode(m)) {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		if err := r.CommitMessages(cctx, m); err != nil {
			// The next reader gets the letter again; Handle is idempotent.
			w.log.Warn("commit dead letter", telemetry.LogTopic, m.Topic, telemetry.LogPartition, m.Partition,
				telemetry.LogOffset, m.Offset, telemetry.Err(err))
		}
		cancel()
	}
}

// handle calls Handle until it succeeds; false means ctx ended first.
func (w *watcher) handle(ctx context.Context, l Letter) bool {
	for failures := 1; ; failures++ {
		err := w.cfg.Handle(ctx, l)
		if err == nil {
			w.log.Debug("dead letter handled", telemetry.LogTopic, l.Position.Topic, telemetry.LogPartition, l.Position.Partition,
				telemetry.LogOffset, l.Position.Offset, telemetry.LogOrderID, l.OrderID, telemetry.LogReason, l.Reason)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := backoff(failures)
		w.log.Warn("handle dead letter, retrying", telemetry.LogTopic, l.Position.Topic, telemetry.LogPartition, l.Position.Partition,
			telemetry.LogOffset, l.Position.Offset, telemetry.LogOrderID, l.OrderID, telemetry.Err(err),
			telemetry.LogAttempt, failures, telemetry.LogBackoff, wait)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// awaitChange returns when ctx ends or the dead-letter topics Match selects
// are no longer topics.
func (w *watcher) awaitChange(ctx context.Context, topics []string) {
	for sleep(ctx, w.cfg.Refresh) {
		now, err := w.topics(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("list dead-letter topics", telemetry.Err(err))
			}
			continue
		}
		if !slices.Equal(now, topics) {
			w.log.Info("dead-letter topics changed", "topics", now, "were", topics)
			return
		}
	}
}

// backoff doubles from minBackoff to maxBackoff, with jitter.
func backoff(failures int) time.Duration {
	d := maxBackoff
	if shift := failures - 1; shift < 16 {
		if e := minBackoff << shift; e < d {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits d or until ctx is done; it reports whether d passed.
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
