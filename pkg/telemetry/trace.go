package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
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
	// Sampler is OTEL_TRACES_SAMPLER, one of the specification's names:
	// parentbased_always_on (the default: every trace), always_on,
	// always_off, parentbased_always_off, traceidratio and
	// parentbased_traceidratio, whose ratio is SamplerArg
	// (OTEL_TRACES_SAMPLER_ARG, 0 to 1, default 1). With a parent-based
	// sampler only the service that starts a trace (order, for an order's
	// POST) draws; the others follow the sampled flag the trace context
	// carries through the outbox and Kafka, so an order is traced whole or
	// not at all.
	Sampler    string
	SamplerArg float64
}

var samplerNames = []string{"parentbased_always_on", "always_on", "always_off", "parentbased_always_off", "traceidratio", "parentbased_traceidratio"}

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
	c.Sampler = strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	if c.Sampler == "" {
		c.Sampler = "parentbased_always_on"
	}
	if !slices.Contains(samplerNames, c.Sampler) {
		return c, fmt.Errorf("OTEL_TRACES_SAMPLER %q: want one of %s", c.Sampler, strings.Join(samplerNames, ", "))
	}
	c.SamplerArg = 1
	if arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")); arg != "" && strings.HasSuffix(c.Sampler, "traceidratio") {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return c, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q: want a ratio from 0 to 1", arg)
		}
		c.SamplerArg = r
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
		sdktrace.WithSampler(cfg.sampler()),
	)
	return tp, tp.Shutdown, nil
}

// sampler returns the sampler cfg.Sampler names.
func (c TraceConfig) sampler() sdktrace.Sampler {
	var root sdktrace.Sampler
	switch strings.TrimPrefix(c.Sampler, "parentbased_") {
	case "always_off":
		root = sdktrace.NeverSample()
	case "traceidratio":
		root = sdktrace.TraceIDRatioBased(c.SamplerArg)
	default:
		root = sdktrace.AlwaysSample()
	}
	if strings.HasPrefix(c.Sampler, "parentbased_") {
		return sdktrace.ParentBased(root)
	}
	return root
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
