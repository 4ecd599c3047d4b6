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

// handle brings msgs, in fetch order, to outcomes that allow committing
// their offsets: applied, duplicate, skipped or dead-lettered. The messages
// are applied together (see applyItems), except that an undecodable or
// off-route message is dead-lettered in its turn, after the messages before
// it are applied. It returns an error only when ctx is done first.
func (c *Consumer) handle(ctx context.Context, dlq Publisher, msgs []kafka.Message) error {
	all := make([]item, 0, len(msgs))
	defer func() {
		for _, it := range all {
			c.metrics.duration.WithLabelValues(c.cfg.Group, it.env.Type).Observe(time.Since(it.start).Seconds())
			it.span.End()
		}
	}()
	next := 0 // all[next:] await applying
	flush := func() error {
		err := c.applyItems(ctx, dlq, all[next:])
		next = len(all)
		return err
	}
	for _, msg := range msgs {
		env, err := events.FromMessage(msg)
		if err != nil {
			if err := flush(); err != nil {
				return err
			}
			if err := c.rejectUndecodable(ctx, dlq, msg, err); err != nil {
				return err
			}
			continue
		}
		h, ok := c.cfg.Handlers[env.Type]
		if !ok {
			// Tolerant reader: a topic carries types this service has no
			// use for, and producers may add types before consumers know
			// them.
			c.metrics.skipped.WithLabelValues(c.cfg.Group, env.Type).Inc()
			c.log.Debug("event of unhandled type skipped", telemetry.LogEventType, env.Type, telemetry.LogEventID, env.ID)
			continue
		}
		if err := c.routes.Check(msg.Topic, env); err != nil {
			if err := flush(); err != nil {
				return err
			}
			if err := c.rejectOffRoute(ctx, dlq, msg, env, err); err != nil {
				return err
			}
			continue
		}
		ictx, span := c.startSpan(ctx, msg, env)
		all = append(all, item{msg: msg, env: env, h: h, ctx: withEventLogAttrs(ictx, env.Subject, env.ID), span: span, start: time.Now()})
	}
	return flush()
}

// item is a message that passed the checks and awaits its handler, with its
// own span (one per message, in its producer's trace) and log attributes.
type item struct {
	msg   kafka.Message
	env   events.Envelope
	h     Handler
	ctx   context.Context
	span  trace.Span
	start time.Time
}

// applyItems applies items in one transaction. When that fails, nothing of
// it stays: the items before the one that failed are applied again (the
// same way), the failed one goes through process alone, its failed attempt
// counting as its first, and the items after it start over. A failure that
// no one item caused (the inbox insert, the commit) sends every item through
// process alone. Each item is thus applied once, in order, or dead-lettered
// by the same rules as a lone message. It returns an error only when ctx is
// done first.
func (c *Consumer) applyItems(ctx context.Context, dlq Publisher, items []item) error {
	for len(items) > 0 {
		if len(items) == 1 {
			it := items[0]
			return c.process(it.ctx, it.span, dlq, it.msg, it.h, it.env, nil)
		}
		failed, err := c.applyBatch(ctx, items)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.DebugContext(ctx, "batch rolled back, applying its messages again", "messages", len(items), "failed", failed, telemetry.Err(err))
		if failed < 0 {
			for _, it := range items {
				if err := c.process(it.ctx, it.span, dlq, it.msg, it.h, it.env, nil); err != nil {
					return err
				}
			}
			return nil
		}
		if err := c.applyItems(ctx, dlq, items[:failed]); err != nil {
			return err
		}
		it := items[failed]
		if err := c.process(it.ctx, it.span, dlq, it.msg, it.h, it.env, err); err != nil {
			return err
		}
		items = items[failed+1:]
	}
	return nil
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

// process applies env with h, retrying in place until it is applied (or
// found to be a duplicate) or its failures earn it the dead-letter topic.
// A non-nil failed is the error of an attempt already made (in a batch),
// which counts as the first.
func (c *Consumer) process(ctx context.Context, span trace.Span, dlq Publisher, msg kafka.Message, h Handler, env events.Envelope, failed error) error {
	retry := retryState{maxAttempts: c.cfg.MaxAttempts}
	for {
		err := failed
		failed = nil
		if err == nil {
			var duplicate bool
			duplicate, err = c.apply(ctx, h, env)
			if err == nil {
				c.recordApplied(ctx, env, duplicate)
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		class, reason := retry.failed(err)
		if reason != "" {
			recordError(span, err)
			return c.deadLetter(ctx, dlq, msg, env.Type, reason, err)
		}
		wait := c.backoff(retry.failures)
		c.metrics.retries.WithLabelValues(c.cfg.Group, env.Type).Inc()
		span.AddEvent("retry", trace.WithAttributes(
			attribute.Int("attempt", retry.failures),
			attribute.String("error", err.Error()),
			attribute.Bool("transient", class == classTransient),
		))
		c.log.WarnContext(ctx, "event processing failed, retrying", telemetry.LogEventType, env.Type, telemetry.Err(err),
			telemetry.LogAttempt, retry.failures, "transient", class == classTransient, telemetry.LogBackoff, wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
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
	failures     int // every failed attempt
	unclassified int // those of neither permanent nor transient errors
}

// failed records a failed attempt with err. It returns err's class and, when
// the message must go to the dead-letter topic, the reason; "" means retry.
// Permanent errors are dead-lettered at once, transient ones never, others
// after maxAttempts.
func (r *retryState) failed(err error) (errorClass, string) {
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
	}
	return class, ""
}
