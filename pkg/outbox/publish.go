package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// outcome is what became of the rows of a round: published (to delete),
// dead (refused by Kafka for good, to move to the dead letters) or failed
// (refused for now: left in the outbox and retried after a backoff).
type outcome struct {
	published []row
	dead      []deadRow
	failed    *publishError
	// again: rows were left unpublished without a Kafka failure (behind a
	// message the writer refused whole), so the next round runs at once.
	again bool
}

// deadRow is a row Kafka refused for good, with why.
type deadRow struct {
	row    row
	reason string
	err    error
	logCtx context.Context
}

// publish sends batch in one call, each message in a producer span that is a
// child of the trace recorded by Write and the parent of the consumers' spans.
// When Kafka refuses part of it, the rows refused for a reason that is
// permanent are tried once more alone (so one bad row never condemns the
// batch it travelled with) and, refused alone, set aside as dead; the rest
// of the refused rows are retried by the next round.
func (r *Relay) publish(ctx context.Context, batch []row) outcome {
	msgs := make([]kafka.Message, len(batch))
	spans := make([]producerSpan, len(batch))
	for i, rw := range batch {
		spans[i], msgs[i] = r.startProducerSpan(ctx, rw)
	}
	errs := make([]error, len(batch))
	reasons := make([]string, len(batch))
	var again bool
	// Every write of the round, retries of single rows included, ends by
	// one deadline: the relay's connection sits idle meanwhile (see
	// leaseIdle).
	deadline := time.Now().Add(kafkaBudget)
	res := r.write(ctx, deadline, msgs)
	var tooLarge kafka.MessageTooLargeError
	switch {
	case res.err == nil:
	case errors.As(res.err, &tooLarge):
		// The writer refused the whole call for one message larger than it
		// ever sends; nothing was sent. That message is dead, the others go
		// in the next round.
		id := events.Header(tooLarge.Message, events.HeaderID)
		found := slices.IndexFunc(batch, func(rw row) bool { return rw.env.ID == id })
		for i := range batch {
			switch {
			case found < 0:
				errs[i] = res.err // not ours to tell apart: retried, with backoff
			case i == found:
				errs[i], reasons[i] = res.err, reasonTooLarge
			default:
				errs[i], again = errNotSent, true
			}
		}
	case res.each != nil:
		r.isolate(ctx, deadline, batch, msgs, res.each, errs, reasons)
	case errors.Is(res.err, kafka.UnknownTopicOrPartition):
		// The writer found a topic missing before sending anything: try
		// each topic's rows apart, so a deleted topic holds up only its own.
		r.byTopic(ctx, deadline, batch, msgs, errs, reasons)
	default:
		for i := range errs {
			errs[i] = res.err
		}
	}

	var out outcome
	out.again = again
	var failed []int
	for i, rw := range batch {
		spans[i].end(errs[i])
		switch {
		case errs[i] == nil:
			out.published = append(out.published, rw)
			r.m.published.WithLabelValues(rw.topic).Inc()
			delete(r.goneSince, rw.topic)
		case reasons[i] != "":
			out.dead = append(out.dead, deadRow{row: rw, reason: reasons[i], err: errs[i], logCtx: logContext(spans[i].ctx, rw)})
		case errors.Is(errs[i], errNotSent):
		default:
			failed = append(failed, i)
		}
	}
	if len(failed) > 0 {
		r.m.publishErrors.Inc()
		i := failed[0]
		err := errs[i]
		if len(batch) > 1 {
			err = fmt.Errorf("%d of %d messages not written, first: %w", len(failed), len(batch), errs[i])
		}
		out.failed = &publishError{err: err, rows: len(failed), logCtx: logContext(spans[i].ctx, batch[i])}
	}
	return out
}

// errNotSent marks a row the writer did not send because of another row.
var errNotSent = errors.New("not sent: another message of the call was refused")

// Reasons of a dead letter (the reason label of outbox_dead_lettered_total).
const (
	reasonTooLarge     = "message_too_large"
	reasonInvalid      = "invalid_message"
	reasonUnknownTopic = "unknown_topic"
)

// permanent returns the reason a message refused with err would be refused
// again however often it is sent, or "" when a retry may succeed. Kafka's
// TopicAuthorizationFailed is not one: it is a configuration to fix, after
// which the same rows publish.
func permanent(err error) string {
	switch {
	case errors.Is(err, kafka.MessageSizeTooLarge), errors.Is(err, kafka.RecordListTooLarge):
		return reasonTooLarge
	case errors.Is(err, kafka.InvalidMessage), errors.Is(err, kafka.InvalidRecord),
		errors.Is(err, kafka.InvalidTimestamp), errors.Is(err, kafka.UnsupportedForMessageFormat):
		return reasonInvalid
	}
	return ""
}

// isolate sorts out a call Kafka refused in part (each: one error per
// message). Messages refused for a permanent reason shared the refusal with
// the whole produce batch of their partition, so each is sent again alone:
// refused again, it is dead; taken, it is published. A key with a row that
// failed for now sends none of its later rows this round, which keeps its
// order.
func (r *Relay) isolate(ctx context.Context, deadline time.Time, batch []row, msgs []kafka.Message, each kafka.WriteErrors, errs []error, reasons []string) {
	held := map[string]bool{}
	for i, err := range each {
		errs[i] = err
		if err == nil {
			continue
		}
		key := batch[i].topic + "/" + batch[i].env.Subject
		if (permanent(err) == "" && !errors.Is(err, kafka.UnknownTopicOrPartition)) || held[key] {
			held[key] = true
			continue
		}
		alone := r.write(ctx, deadline, msgs[i:i+1]).of(0)
		errs[i] = alone
		reasons[i] = r.deadReason(batch[i].topic, alone)
		if alone != nil && reasons[i] == "" {
			held[key] = true
		}
	}
}

// byTopic sends the rows of each topic of batch in a call of their own.
func (r *Relay) byTopic(ctx context.Context, deadline time.Time, batch []row, msgs []kafka.Message, errs []error, reasons []string) {
	var topics []string
	idx := map[string][]int{}
	for i, rw := range batch {
		if _, ok := idx[rw.topic]; !ok {
			topics = append(topics, rw.topic)
		}
		idx[rw.topic] = append(idx[rw.topic], i)
	}
	for _, t := range topics {
		part := make([]kafka.Message, len(idx[t]))
		for j, i := range idx[t] {
			part[j] = msgs[i]
		}
		res := r.write(ctx, deadline, part)
		for j, i := range idx[t] {
			errs[i] = res.of(j)
			if res.each == nil {
				reasons[i] = r.deadReason(t, errs[i])
			}
		}
	}
}

// deadReason returns why a message to topic refused with err is dead, or ""
// when it is not (yet). A topic Kafka does not know may be one being
// created, or a metadata cache not yet refreshed: its rows die only when it
// has been unknown for unknownTopicGrace.
func (r *Relay) deadReason(topic string, err error) string {
	if err == nil {
		return ""
	}
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		return permanent(err)
	}
	since, ok := r.goneSince[topic]
	if !ok {
		r.goneSince[topic] = time.Now()
		return ""
	}
	if time.Since(since) < r.unknownTopicGrace {
		return ""
	}
	// A row requeued later gets a grace of its own: the topic may have been
	// re-created meanwhile.
	delete(r.goneSince, topic)
	return reasonUnknownTopic
}

// logContext is the context of the relay's log lines about rw: its
// publication span's, with its order and event ids.
func logContext(ctx context.Context, rw row) context.Context {
	return telemetry.WithLogAttrs(ctx,
		slog.String(telemetry.LogOrderID, rw.env.Subject), slog.String(telemetry.LogEventID, rw.env.ID))
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

// write sends msgs in one WriteMessages call, to end by deadline, and times
// it. Kafka-level retries are the publisher's; the relay retries what failed.
func (r *Relay) write(ctx context.Context, deadline time.Time, msgs []kafka.Message) writeResult {
	// A relay being stopped lets the batch in flight finish, for a while:
	// cut short, the batch may reach Kafka anyway and is published again by
	// the next leader. The round's deadline holds either way.
	wctx, cancel := withGrace(ctx, shutdownGrace)
	defer cancel()
	wctx, cancelDeadline := context.WithDeadline(wctx, deadline)
	defer cancelDeadline()
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
