package consumer

import (
	"context"
	"strconv"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// startSpan continues the producer's trace (W3C trace context in the
// message headers) with a consumer span for processing msg.
func (c *Consumer) startSpan(ctx context.Context, msg kafka.Message, env events.Envelope) (context.Context, trace.Span) {
	ctx = c.propagator.Extract(ctx, headerCarrier(msg.Headers))
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.destination.name", msg.Topic),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.operation.name", "process"),
		attribute.String("messaging.consumer.group.name", c.cfg.Group),
		attribute.String("messaging.destination.partition.id", strconv.Itoa(msg.Partition)),
		attribute.Int64("messaging.kafka.offset", msg.Offset),
		attribute.String("messaging.kafka.message.key", string(msg.Key)),
	}
	if env.ID != "" {
		attrs = append(attrs, attribute.String("messaging.message.id", env.ID), attribute.String("event.type", env.Type))
	}
	if env.Subject != "" {
		attrs = append(attrs, telemetry.OrderID.String(env.Subject))
	}
	return c.tracer.Start(ctx, msg.Topic+" process", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

func recordError(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// headerCarrier reads W3C trace context from Kafka headers.
type headerCarrier []kafka.Header

func (h headerCarrier) Get(key string) string {
	for _, kv := range h {
		if kv.Key == key {
			return string(kv.Value)
		}
	}
	return ""
}

// Set is never used: the consumer only extracts.
func (h headerCarrier) Set(string, string) {}

func (h headerCarrier) Keys() []string {
	keys := make([]string, len(h))
	for i, kv := range h {
		keys[i] = kv.Key
	}
	return keys
}
