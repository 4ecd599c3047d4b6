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

// handle brings one message to an outcome that allows committing its offset:
// applied, duplicate, skipped or dead-lettered. It returns an error only when
// ctx is done first.
func (c *Consumer) handle(ctx context.Context, dlq Publisher, msg kafka.Message) error {
	env, err := events.FromMessage(msg)
	if err != nil {
		return c.rejectUndecodable(ctx, dlq, msg, err)
	}
	h, ok := c.cfg.Handlers[env.Type]
	if !ok {
		// Tolerant reader: a topic carries types this service has no use
		// for, and producers may add types before consumers know them.
		c.metrics.skipped.WithLabelValues(c.cfg.Group, env.Type).Inc()
		c.log.Debug("event of unhandled type skipped", telemetry.LogEventType, env.Type, telemetry.LogEventID, env.ID)
		return nil
	}

	ctx, span := c.startSpan(ctx, msg, env)
	defer span.End()
	ctx = withEventLogAttrs(ctx, env.Subject, env.ID)
	start := time.Now()
	defer func() {
		c.metrics.duration.WithLabelValues(c.cfg.Group, env.Type).Observe(time.Since(start).Seconds())
	}()
	if err := c.routes.Check(msg.Topic, env); err != nil {
		// Whoever can write to the broker could have sent it: never apply.
		recordError(span, err)
		return c.deadLetter(ctx, dlq, msg, env.Type, ReasonUnexpectedSource, err)
	}
	return c.process(ctx, span, dlq, msg, h, env)
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
func (c *Consumer) process(ctx context.Context, span trace.Span, dlq Publisher, msg kafka.Message, h Handler, env events.Envelope) error {
	retry := retryState{maxAttempts: c.cfg.MaxAttempts}
	for {
		duplicate, err := c.apply(ctx, h, env)
		if err == nil {
			c.recordApplied(ctx, env, duplicate)
			return nil
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
