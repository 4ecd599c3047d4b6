package consumer

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// partition is one partition of one topic, the unit of order and of
// parking.
type partition struct {
	topic string
	id    int
}

func partitionOf(msg kafka.Message) partition { return partition{msg.Topic, msg.Partition} }

// entry is one fetched message on its way to an outcome that allows
// committing its offset: applied, duplicate, skipped or dead-lettered.
type entry struct {
	msg  kafka.Message
	kind entryKind
	env  events.Envelope // entryOffRoute: the envelope
	err  error           // entryUndecodable, entryOffRoute: why it is rejected
	it   *item           // entryApply
}

type entryKind int

const (
	entrySkip        entryKind = iota // a type without a handler: counted when prepared, nothing left to do
	entryApply                        // awaits its handler
	entryUndecodable                  // to be dead-lettered with reason decode
	entryOffRoute                     // to be dead-lettered with reason unexpected_source
)

// item is a message that passed the checks and awaits its handler, with its
// own span (one per message, in its producer's trace), log attributes and
// failed attempts so far.
type item struct {
	msg   kafka.Message
	env   events.Envelope
	h     Handler
	ctx   context.Context
	span  trace.Span
	start time.Time
	retry retryState
	// parkedFor is the backoff before the lane's first retry, as logged
	// when the item's partition was parked.
	parkedFor time.Duration
	ended     bool // its duration is observed and its span ended
}

// prepare reads msgs' envelopes and checks them, in fetch order. Only an
// unhandled type is dealt with here (counted and skipped: a tolerant reader,
// as a topic carries types this service has no use for and producers may add
// types before consumers know them); the rest is left for handling.
func (c *Consumer) prepare(ctx context.Context, msgs []kafka.Message) []*entry {
	entries := make([]*entry, 0, len(msgs))
	for _, msg := range msgs {
		env, err := events.FromMessage(msg)
		if err != nil {
			entries = append(entries, &entry{msg: msg, kind: entryUndecodable, err: err})
			continue
		}
		h, ok := c.cfg.Handlers[env.Type]
		if !ok {
			c.metrics.skipped.WithLabelValues(c.cfg.Group, env.Type).Inc()
			c.log.Debug("event of unhandled type skipped", telemetry.LogEventType, env.Type, telemetry.LogEventID, env.ID)
			entries = append(entries, &entry{msg: msg, kind: entrySkip})
			continue
		}
		if err := c.routes.Check(msg.Topic, env); err != nil {
			entries = append(entries, &entry{msg: msg, kind: entryOffRoute, env: env, err: err})
			continue
		}
		ictx, span := c.startSpan(ctx, msg, env)
		it := &item{msg: msg, env: env, h: h, ctx: withEventLogAttrs(ictx, env.Subject, env.ID), span: span, start: time.Now(),
			retry: retryState{maxAttempts: c.cfg.MaxAttempts, newerWait: c.cfg.UnknownVersionWait}}
		entries = append(entries, &entry{msg: msg, kind: entryApply, it: it})
	}
	return entries
}

// finish records that it reached its outcome (or was abandoned): its
// processing duration and the end of its span.
func (c *Consumer) finish(it *item) {
	if it.ended {
		return
	}
	it.ended = true
	c.metrics.duration.WithLabelValues(c.cfg.Group, it.env.Type).Observe(time.Since(it.start).Seconds())
	it.span.End()
}

// handling brings entries, in order, to their outcomes. The messages are
// applied together (see applyItems), except that an undecodable or off-route
// message is dead-lettered in its turn, after the messages before it are
// applied. The main loop's handling (lanes != nil) does not retry a failed
// message: it parks the message's partition, handing the message and every
// later one of its partition to a lane. A lane's handling (lanes == nil)
// retries in place.
type handling struct {
	c       *Consumer
	dlq     Publisher
	entries []*entry
	lanes   *lanes                 // the main loop's; nil in a lane
	parked  map[partition]struct{} // the partitions this handling parked
}

func (h *handling) isParked(p partition) bool {
	_, ok := h.parked[p]
	return ok
}

// work handles h.entries. It returns an error only when ctx is done first.
func (h *handling) work(ctx context.Context) error {
	var pending []*item // awaiting applying
	for _, e := range h.entries {
		if h.isParked(partitionOf(e.msg)) {
			continue
		}
		switch e.kind {
		case entrySkip:
			continue
		case entryApply:
			pending = append(pending, e.it)
			continue
		}
		if err := h.applyItems(ctx, pending); err != nil {
			return err
		}
		pending = nil
		if h.isParked(partitionOf(e.msg)) {
			continue
		}
		var err error
		if e.kind == entryUndecodable {
			err = h.c.rejectUndecodable(ctx, h.dlq, e.msg, e.err)
		} else {
			err = h.c.rejectOffRoute(ctx, h.dlq, e.msg, e.env, e.err)
		}
		if err != nil {
			return err
		}
	}
	return h.applyItems(ctx, pending)
}

// unparked drops from items those of the partitions parked meanwhile: they
// are the lanes' now.
func (h *handling) unparked(items []*item) []*item {
	if len(h.parked) == 0 {
		return items
	}
	var out []*item
	for _, it := range items {
		if !h.isParked(partitionOf(it.msg)) {
			out = append(out, it)
		}
	}
	return out
}

// applyItems applies items in one transaction. When that fails, nothing of
// it stays: the items before the one that failed are applied again (the
// same way), the failed one goes through process alone, its failed attempt
// counting as its first, and the items after it start over. A failure that
// no one item caused (the inbox insert, the commit) sends every item through
// process alone. Each item is thus applied once, in order, or dead-lettered
// by the same rules as a lone message, or (in the main loop) handed to its
// partition's lane with the items after it. It returns an error only when
// ctx is done first.
func (h *handling) applyItems(ctx context.Context, items []*item) error {
	for {
		items = h.unparked(items)
		if len(items) == 0 {
			return nil
		}
		if len(items) == 1 {
			return h.process(ctx, items[0], nil)
		}
		failed, err := h.c.applyBatch(ctx, items)
		if err == nil {
			for _, it := range items {
				h.c.finish(it)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.c.log.DebugContext(ctx, "batch rolled back, applying its messages again", "messages", len(items), "failed", failed, telemetry.Err(err))
		if failed < 0 {
			for _, it := range items {
				if h.isParked(partitionOf(it.msg)) {
					continue
				}
				if err := h.process(ctx, it, nil); err != nil {
					return err
				}
			}
			return nil
		}
		if err := h.applyItems(ctx, items[:failed]); err != nil {
			return err
		}
		if it := items[failed]; !h.isParked(partitionOf(it.msg)) {
			if err := h.process(ctx, it, err); err != nil {
				return err
			}
		}
		items = items[failed+1:]
	}
}

// rejectOffRoute dead-letters an event that did not travel its route:
// whoever can write to the broker could have sent it, so it is never
// applied.
func (c *Consumer) rejectOffRoute(ctx context.Context, dlq Publisher, msg kafka.Message, env events.Envelope, err error) error {
	ctx, span := c.startSpan(ctx, msg, env)
	defer span.End()
	ctx = withEventLogAttrs(ctx, env.Subject, env.ID)
	start := time.Now()
	defer func() {
		c.metrics.duration.WithLabelValues(c.cfg.Group, env.Type).Observe(time.Since(start).Seconds())
	}()
	recordError(span, err)
	return c.deadLetter(ctx, dlq, msg, env.Type, ReasonUnexpectedSource, err)
}

// rejectUndecodable dead-letters a message whose envelope cannot be read,
// with whatever metadata its headers do carry on the span and log lines.
func (c *Consumer) rejectUndecodable(ctx context.Context, dlq Publisher, msg kafka.Message, err error) error {
	partial := events.Envelope{
		ID:      events.Header(msg, events.HeaderID),
		Type:    events.Header(msg, events.HeaderType),
		Subject: string(msg.Key),
	}
	ctx, span := c.startSpan(ctx, msg, partial)
	defer span.End()
	ctx = withEventLogAttrs(ctx, partial.Subject, partial.ID)
	recordError(span, err)
	return c.deadLetter(ctx, dlq, msg, partial.Type, ReasonDecode, err)
}

// process applies it, alone, until it is applied (or found to be a
// duplicate) or its failures earn it the dead-letter topic. In the main loop
// a failure that will be retried parks its partition instead: the lane
// retries it. A non-nil failed is the error of an attempt already made (in
// a batch), which counts as one. It returns an error only when ctx is done
// first.
func (h *handling) process(ctx context.Context, it *item, failed error) error {
	c := h.c
	for {
		err := failed
		failed = nil
		if err == nil {
			var duplicate bool
			duplicate, err = c.apply(it.ctx, it.h, it.env)
			if err == nil {
				c.recordApplied(it.ctx, it.env, duplicate)
				c.finish(it)
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		class, reason := it.retry.failed(err, time.Now())
		if reason != "" {
			recordError(it.span, err)
			if err := c.deadLetter(it.ctx, h.dlq, it.msg, it.env.Type, reason, err); err != nil {
				return err
			}
			c.finish(it)
			return nil
		}
		wait := c.backoff(it.retry.failures)
		c.recordRetry(it, err, class, wait, h.lanes != nil)
		if h.lanes != nil {
			it.parkedFor = wait
			h.park(ctx, it)
			return nil
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

func (c *Consumer) recordRetry(it *item, err error, class errorClass, wait time.Duration, parking bool) {
	c.metrics.retries.WithLabelValues(c.cfg.Group, it.env.Type).Inc()
	if class == classNewerVersion {
		c.metrics.newerVersionRetries.WithLabelValues(c.cfg.Group, it.env.Type).Inc()
	}
	it.span.AddEvent("retry", trace.WithAttributes(
		attribute.Int("attempt", it.retry.failures),
		attribute.String("error", err.Error()),
		attribute.Bool("transient", class == classTransient),
		attribute.Bool("newer_version", class == classNewerVersion),
	))
	msg := "event processing failed, retrying"
	if parking {
		msg = "event processing failed, partition parked to retry it"
	}
	c.log.WarnContext(it.ctx, msg, telemetry.LogEventType, it.env.Type, telemetry.Err(err),
		telemetry.LogAttempt, it.retry.failures, "transient", class == classTransient, "newer_version", class == classNewerVersion,
		telemetry.LogBackoff, wait, telemetry.LogTopic, it.msg.Topic, telemetry.LogPartition, it.msg.Partition, telemetry.LogOffset, it.msg.Offset)
}

// park hands it, and the entries of its partition after it, to a new lane
// of that partition. The entries of the partition before it have reached
// their outcomes: their offsets are committed first, so that no commit of
// this handling can move the group's offset back below one of the lane's.
func (h *handling) park(ctx context.Context, it *item) {
	p := partitionOf(it.msg)
	h.parked[p] = struct{}{}
	var before []kafka.Message
	var rest []*entry
	seen := false
	for _, e := range h.entries {
		switch {
		case partitionOf(e.msg) != p:
		case e.it == it:
			seen = true
		case seen:
			rest = append(rest, e)
		default:
			before = append(before, e.msg)
		}
	}
	h.c.commit(ctx, h.lanes.commits, before)
	h.lanes.start(ctx, it, rest)
}

func (c *Consumer) recordApplied(ctx context.Context, env events.Envelope, duplicate bool) {
	if duplicate {
		c.metrics.duplicates.WithLabelValues(c.cfg.Group, env.Type).Inc()
		c.log.InfoContext(ctx, "duplicate event skipped", telemetry.LogEventType, env.Type)
		return
	}
	c.metrics.processed.WithLabelValues(c.cfg.Group, env.Type).Inc()
	c.log.DebugContext(ctx, "event processed", telemetry.LogEventType, env.Type)
}

// retryState counts one message's failed attempts and decides, after each,
// whether it is retried or dead-lettered.
type retryState struct {
	maxAttempts  int
	newerWait    time.Duration
	failures     int       // every failed attempt
	unclassified int       // those of neither permanent nor transient errors
	newerSince   time.Time // the first failure for a newer schema version
}

// failed records a failed attempt with err at now. It returns err's class
// and, when the message must go to the dead-letter topic, the reason; ""
// means retry. Permanent errors are dead-lettered at once, transient ones
// never, newer schema versions once newerWait has passed since the first
// such failure, others after maxAttempts.
func (r *retryState) failed(err error, now time.Time) (errorClass, string) {
	r.failures++
	class := classify(err)
	switch class {
	case classPermanent:
		return class, ReasonHandler
	case classUnclassified:
		r.unclassified++
		if r.unclassified >= r.maxAttempts {
			return class, ReasonMaxAttempts
		}
	case classNewerVersion:
		if r.newerSince.IsZero() {
			r.newerSince = now
		}
		if now.Sub(r.newerSince) >= r.newerWait {
			return class, ReasonUnknownVersion
		}
	}
	return class, ""
}
