package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// publishError is a batch Kafka did not take; the relay retries it.
type publishError struct {
	err    error
	rows   int
	logCtx context.Context // of the first failed message: its trace and ids
}

func (e *publishError) Error() string {
	return fmt.Sprintf("publish %d outbox rows: %v", e.rows, e.err)
}
func (e *publishError) Unwrap() error { return e.err }

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
