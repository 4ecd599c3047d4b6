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
		{"defaults", nil, false, TraceConfig{ServiceName: "order", Endpoint: "http://127.0.0.1:4317"}},
		{"set", map[string]string{"OTEL_SERVICE_NAME": "sagashop-order", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317", "OTEL_SDK_DISABLED": "TRUE"},
			false, TraceConfig{ServiceName: "sagashop-order", Endpoint: "http://jaeger:4317", Disabled: true}},
		{"no scheme", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4317"}, true, TraceConfig{}},
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
