package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TraceConfig is the subset of the standard OTEL_* variables Sagashop reads.
type TraceConfig struct {
	ServiceName string // OTEL_SERVICE_NAME
	Endpoint    string // OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://127.0.0.1:4317 (OTLP gRPC)
	Disabled    bool   // OTEL_SDK_DISABLED=true
}

// ParseTraceConfig reads the OTEL_* variables through getenv, with
// defaultService as service name and the local stack's Jaeger as endpoint
// when they are unset.
func ParseTraceConfig(getenv func(string) string, defaultService string) (TraceConfig, error) {
	c := TraceConfig{
		ServiceName: getenv("OTEL_SERVICE_NAME"),
		Endpoint:    getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
		Disabled:    strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true"),
	}
	if c.ServiceName == "" {
		c.ServiceName = defaultService
	}
	if c.Endpoint == "" {
		c.Endpoint = "http://127.0.0.1:4317"
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT %q: want http(s)://host:port", c.Endpoint)
	}
	return c, nil
}

// Propagator is the W3C trace-context propagator used on HTTP and Kafka.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// NewTracerProvider returns a tracer provider exporting to cfg.Endpoint over
// OTLP gRPC, and its shutdown function, which flushes pending spans. Export
// failures go to logger; they never fail a request. With cfg.Disabled it
// returns a no-op provider.
func NewTracerProvider(ctx context.Context, cfg TraceConfig) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.Disabled {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	if err != nil {
		return nil, nil, fmt.Errorf("otlp exporter: %w", err)
	}
	// Schemaless: merging with resource.Default() fails whenever the SDK's
	// semantic-convention version moves ahead of the one imported here.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName)))
	if err != nil {
		return nil, nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(orderIDProcessor{}),
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(500*time.Millisecond)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return tp, tp.Shutdown, nil
}

// ErrorLogger adapts logger to otel.ErrorHandler, so exporter problems
// (Jaeger down) show up as log lines instead of going to stderr.
type ErrorLogger struct{ Logger *slog.Logger }

// Handle logs err at warning level.
func (h ErrorLogger) Handle(err error) { h.Logger.Warn("telemetry error", Err(err)) }

// orderIDProcessor stamps order.id on every span started in a context that
// carries an order_id log attribute (see WithLogAttrs), so that the spans of
// libraries that know nothing of orders (pgx queries, HTTP clients) are
// found by the same Jaeger search as the saga's own.
type orderIDProcessor struct{}

func (orderIDProcessor) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	if id := OrderIDFrom(ctx); id != "" {
		s.SetAttributes(OrderID.String(id))
	}
}
func (orderIDProcessor) OnEnd(sdktrace.ReadOnlySpan)      {}
func (orderIDProcessor) Shutdown(context.Context) error   { return nil }
func (orderIDProcessor) ForceFlush(context.Context) error { return nil }
