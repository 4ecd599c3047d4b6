package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestLoggerCarriesTraceAndContextAttrs(t *testing.T) {
	var buf bytes.Buffer
	logger := NewLogger(&buf, "order", slog.LevelInfo)
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	ctx = WithLogAttrs(ctx, slog.String(LogOrderID, "o-1"))
	ctx = WithLogAttrs(ctx, slog.String(LogEventID, "e-1"))
	logger.InfoContext(ctx, "payment failed", "amount", 5)
	span.End()

	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not JSON: %q", buf.String())
	}
	want := map[string]any{
		"service": "order", "msg": "payment failed", LogOrderID: "o-1", LogEventID: "e-1",
		LogTraceID: span.SpanContext().TraceID().String(), LogSpanID: span.SpanContext().SpanID().String(),
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
}

func TestLoggerWithoutContext(t *testing.T) {
	var buf bytes.Buffer
	NewLogger(&buf, "email", slog.LevelInfo).Info("started")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if _, ok := line[LogTraceID]; ok {
		t.Errorf("trace id without a span: %v", line)
	}
}

func TestOrderIDStampedOnEverySpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(orderIDProcessor{}), sdktrace.WithSpanProcessor(rec))
	ctx := WithLogAttrs(context.Background(), slog.String(LogOrderID, "o-42"))
	ctx, parent := tp.Tracer("t").Start(ctx, "parent")
	_, child := tp.Tracer("pgx").Start(ctx, "query")
	child.End()
	parent.End()
	_, other := tp.Tracer("t").Start(context.Background(), "unrelated")
	other.End()

	for _, s := range rec.Ended() {
		var got string
		for _, a := range s.Attributes() {
			if a.Key == OrderID {
				got = a.Value.AsString()
			}
		}
		want := "o-42"
		if s.Name() == "unrelated" {
			want = ""
		}
		if got != want {
			t.Errorf("span %s: order.id %q, want %q", s.Name(), got, want)
		}
	}
}

func TestParseTraceConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
		want    TraceConfig
	}{
		{"defaults", nil, false, TraceConfig{ServiceName: "order", Endpoint: "http://127.0.0.1:4317", Sampler: "parentbased_always_on", SamplerArg: 1}},
		{"set", map[string]string{"OTEL_SERVICE_NAME": "sagashop-order", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317", "OTEL_SDK_DISABLED": "TRUE"},
			false, TraceConfig{ServiceName: "sagashop-order", Endpoint: "http://jaeger:4317", Disabled: true, Sampler: "parentbased_always_on", SamplerArg: 1}},
		{"no scheme", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4317"}, true, TraceConfig{}},
		{"ratio", map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
			false, TraceConfig{ServiceName: "order", Endpoint: "http://127.0.0.1:4317", Sampler: "parentbased_traceidratio", SamplerArg: 0.01}},
		{"arg ignored without a ratio", map[string]string{"OTEL_TRACES_SAMPLER": "Always_Off", "OTEL_TRACES_SAMPLER_ARG": "x"},
			false, TraceConfig{ServiceName: "order", Endpoint: "http://127.0.0.1:4317", Sampler: "always_off", SamplerArg: 1}},
		{"unknown sampler", map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, true, TraceConfig{}},
		{"ratio above 1", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, true, TraceConfig{}},
		{"ratio not a number", map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, true, TraceConfig{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTraceConfig(func(k string) string { return tt.env[k] }, "order")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// A parent-based ratio sampler draws only at the root: a trace the first
// service sampled stays sampled downstream, whatever the ratio there.
func TestParentBasedRatioSamplerFollowsTheParent(t *testing.T) {
	cfg := TraceConfig{Sampler: "parentbased_traceidratio", SamplerArg: 0}
	tr := sdktrace.NewTracerProvider(sdktrace.WithSampler(cfg.sampler())).Tracer("t")
	_, root := tr.Start(context.Background(), "root")
	if root.SpanContext().IsSampled() {
		t.Errorf("a root span was sampled at ratio 0")
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	_, child := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "child")
	if !child.SpanContext().IsSampled() {
		t.Errorf("the child of a sampled remote parent was not sampled")
	}
	always := TraceConfig{Sampler: "parentbased_always_on"}
	_, s := sdktrace.NewTracerProvider(sdktrace.WithSampler(always.sampler())).Tracer("t").Start(context.Background(), "root")
	if !s.SpanContext().IsSampled() {
		t.Errorf("parentbased_always_on did not sample a root")
	}
}

func TestNewTracerProviderStarts(t *testing.T) {
	cfg, err := ParseTraceConfig(func(string) string { return "" }, "order")
	if err != nil {
		t.Fatal(err)
	}
	tp, shutdown, err := NewTracerProvider(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "x")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = shutdown(ctx) // no collector needs to be listening
}
