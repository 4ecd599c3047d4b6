package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"
)

var (
	errMissing = errors.New("thing not found")
	errInvalid = errors.New("invalid thing")
)

// fieldsError is a domain validation error: it matches errInvalid and names
// its fields.
type fieldsError map[string]string

func (f fieldsError) Error() string                  { return fmt.Sprint(map[string]string(f)) }
func (f fieldsError) Is(target error) bool           { return target == errInvalid }
func (f fieldsError) FieldErrors() map[string]string { return f }

func TestProblemsWrite(t *testing.T) {
	problems := Problems{
		errMissing: {Status: http.StatusNotFound, Title: "thing not found"},
		errInvalid: {Status: http.StatusUnprocessableEntity, Title: "invalid thing"},
	}
	tests := []struct {
		name       string
		method     string
		path       string
		err        error
		wantStatus int
		wantTitle  string
		wantFields map[string]string
		wantLog    string // the one log line's message
	}{
		{"sentinel", "GET", "/things/a", fmt.Errorf("get thing a: %w", errMissing), 404, "thing not found", nil, "request refused"},
		{"field errors", "PUT", "/things/a", fmt.Errorf("put thing: %w", fieldsError{"name": "is required"}), 422, "invalid thing",
			map[string]string{"name": "is required"}, "request refused"},
		{"request error", "PUT", "/things/a", Invalid(map[string]string{"price": "must be a number"}), 422, "Unprocessable Entity",
			map[string]string{"price": "must be a number"}, "request refused"},
		{"unknown error", "GET", "/things/a", errors.New("dial tcp 10.1.2.3:5432: password=hunter2"), 500, "Internal Server Error", nil, "request failed"},
		{"bad id on a read", "GET", "/things/a%20b", nil, 404, "Not Found", nil, "request refused"},
		{"bad id on a write", "PUT", "/things/a%20b", nil, 400, "Bad Request", nil, "request refused"},
		{"bad uuid on a read", "GET", "/orders/not-a-uuid", nil, 404, "Not Found", nil, "request refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := RouterConfig{Service: "test", Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
				TracerProvider: noop.NewTracerProvider(), Registry: prometheus.NewRegistry()}
			r, err := NewRouter(cfg)
			if err != nil {
				t.Fatal(err)
			}
			handle := func(w http.ResponseWriter, r *http.Request) {
				if _, err := PathID(r, "id"); err != nil {
					problems.Write(w, r, err)
					return
				}
				problems.Write(w, r, tt.err)
			}
			r.Get("/things/{id}", handle)
			r.Put("/things/{id}", handle)
			r.Get("/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
				_, err := PathUUID(r, "id")
				problems.Write(w, r, err)
			})
			rec := httptest.NewRecorder()
			Handler(r, cfg).ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))

			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if rec.Code != tt.wantStatus || p.Status != tt.wantStatus || p.Title != tt.wantTitle {
				t.Errorf("status %d, problem %+v; want %d %q", rec.Code, p, tt.wantStatus, tt.wantTitle)
			}
			if fmt.Sprint(p.Errors) != fmt.Sprint(tt.wantFields) {
				t.Errorf("field errors %v, want %v", p.Errors, tt.wantFields)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/problem+json" {
				t.Errorf("content type %q", got)
			}
			if strings.Contains(rec.Body.String(), "hunter2") || strings.Contains(rec.Body.String(), "10.1.2.3") {
				t.Errorf("internal error text reached the client: %s", rec.Body)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], `"msg":"`+tt.wantLog+`"`) || !strings.Contains(lines[0], `"error":`) {
				t.Errorf("log lines %q, want one %q line with the error", lines, tt.wantLog)
			}
		})
	}
}
