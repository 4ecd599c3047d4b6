// Package telemetry sets up what every Sagashop service reports about itself:
// JSON logs whose lines carry the trace, span, order and event ids of the
// request or message being handled, and OpenTelemetry traces exported over
// OTLP, so one order is one trace from its HTTP request through every relay
// and consumer.
package telemetry

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// OrderID is the span attribute every span of the saga carries, so Jaeger
// finds an order's trace by the tag order.id.
const OrderID = attribute.Key("order.id")

// The log vocabulary: attribute names every service and shared package uses
// for the same things, so one grep finds them all.
const (
	LogTraceID    = "trace_id"
	LogSpanID     = "span_id"
	LogOrderID    = "order_id"
	LogEventID    = "event_id"
	LogEventType  = "event_type"
	LogError      = "error"
	LogTopic      = "topic"
	LogPartition  = "partition"
	LogOffset     = "offset"
	LogGroup      = "group"
	LogAttempt    = "attempt"
	LogBackoff    = "backoff"
	LogReason     = "reason"
	LogStatus     = "status"
	LogCustomerID = "customer_id"
	LogSKU        = "sku"
)

// Err is the log attribute of an error: always under the key "error".
func Err(err error) slog.Attr { return slog.Any(LogError, err) }

type logAttrsKey struct{}

// WithLogAttrs returns ctx carrying attrs that every log line written with
// ctx (logger.InfoContext and friends) will include, e.g. order_id.
func WithLogAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev, _ := ctx.Value(logAttrsKey{}).([]slog.Attr)
	all := make([]slog.Attr, 0, len(prev)+len(attrs))
	all = append(append(all, prev...), attrs...)
	return context.WithValue(ctx, logAttrsKey{}, all)
}

// NewLogger returns a JSON logger for service writing to w. Lines written
// with a context include its trace_id and span_id and the attributes added
// with WithLogAttrs.
func NewLogger(w io.Writer, service string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(contextHandler{h}).With("service", service)
}

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()), slog.String(LogSpanID, sc.SpanID().String()))
	}
	if attrs, ok := ctx.Value(logAttrsKey{}).([]slog.Attr); ok {
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// OrderIDFrom returns the order_id log attribute carried by ctx, or "".
func OrderIDFrom(ctx context.Context) string {
	attrs, _ := ctx.Value(logAttrsKey{}).([]slog.Attr)
	for i := len(attrs) - 1; i >= 0; i-- {
		if attrs[i].Key == LogOrderID {
			return attrs[i].Value.String()
		}
	}
	return ""
}

// ConcernsOrder returns ctx for work on one order: its span gets the
// order.id attribute (so Jaeger finds it by that tag) and its log lines the
// order_id attribute.
func ConcernsOrder(ctx context.Context, orderID string) context.Context {
	trace.SpanFromContext(ctx).SetAttributes(OrderID.String(orderID))
	return WithLogAttrs(ctx, slog.String(LogOrderID, orderID))
}
