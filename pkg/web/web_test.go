package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestDecode(t *testing.T) {
	type body struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int // 0 = no error
		wantField   string
	}{
		{"ok", "application/json", `{"name":"a","count":2}`, 0, ""},
		{"ok with charset", "application/json; charset=utf-8", `{"name":"a"}`, 0, ""},
		{"no content type", "", `{"name":"a"}`, 0, ""},
		{"empty", "application/json", ``, http.StatusBadRequest, ""},
		{"not json", "application/json", `{name: a}`, http.StatusBadRequest, ""},
		{"truncated", "application/json", `{"name":"a"`, http.StatusBadRequest, ""},
		{"unknown field", "application/json", `{"name":"a","price":1}`, http.StatusBadRequest, ""},
		{"wrong type", "application/json", `{"count":"two"}`, http.StatusBadRequest, "count"},
		{"two objects", "application/json", `{"name":"a"}{"name":"b"}`, http.StatusBadRequest, ""},
		{"trailing garbage", "application/json", `{"name":"a"} x`, http.StatusBadRequest, ""},
		{"array", "application/json", `[1,2]`, http.StatusBadRequest, ""},
		{"xml", "application/xml", `<a/>`, http.StatusUnsupportedMediaType, ""},
		{"too large", "application/json", `{"name":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, http.StatusRequestEntityTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			var b body
			err := Decode(httptest.NewRecorder(), r, &b)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *RequestError", err)
			}
			if re.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", re.Status, tt.wantStatus, re.Detail)
			}
			if tt.wantField != "" && re.Fields[tt.wantField] == "" {
				t.Errorf("fields %v lack %q", re.Fields, tt.wantField)
			}
		})
	}
}

func TestCheckID(t *testing.T) {
	tests := map[string]bool{
		"c-1": true, "mug": true, "0193a5c0-0000-7000-8000-000000000001": true, "a.b_c:d": true,
		"": false, "-x": false, "1'; DROP TABLE orders;--": false, "a b": false, "../etc": false,
		strings.Repeat("a", 64): true, strings.Repeat("a", 65): false, "ümlaut": false,
	}
	for id, want := range tests {
		if got := CheckID(id); got != want {
			t.Errorf("CheckID(%q) = %v, want %v", id, got, want)
		}
	}
}

func newTestRouter(ready map[string]Ready) (http.Handler, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	cfg := RouterConfig{Service: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		TracerProvider: noop.NewTracerProvider(), Registry: reg, Ready: ready}
	r, err := NewRouter(cfg)
	if err != nil {
		panic(err) // a fresh registry: cannot fail
	}
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	r.Get("/things/{id}", func(w http.ResponseWriter, r *http.Request) { Encode(w, http.StatusOK, map[string]string{"ok": "yes"}) })
	return Handler(r, cfg), reg
}

func TestRouter(t *testing.T) {
	down := errors.New("connection refused to 10.0.0.1:5432 password=secret")
	tests := []struct {
		name        string
		ready       map[string]Ready
		method      string
		path        string
		wantStatus  int
		wantProblem bool
	}{
		{"livez", nil, http.MethodGet, "/livez", 200, false},
		{"ready", map[string]Ready{"database": func(context.Context) error { return nil }}, http.MethodGet, "/readyz", 200, false},
		{"not ready", map[string]Ready{"database": func(context.Context) error { return down }, "kafka": func(context.Context) error { return nil }},
			http.MethodGet, "/readyz", 503, true},
		{"metrics", nil, http.MethodGet, "/metrics", 200, false},
		{"not found", nil, http.MethodGet, "/nope", 404, true},
		{"method not allowed", nil, http.MethodDelete, "/things/1", 405, true},
		{"panic", nil, http.MethodGet, "/panic", 500, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newTestRouter(tt.ready)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("Content-Type") == "application/problem+json"; got != tt.wantProblem {
				t.Fatalf("content type %q", rec.Header().Get("Content-Type"))
			}
			if tt.wantProblem {
				var p Problem
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != tt.wantStatus || p.Title == "" {
					t.Fatalf("problem %+v (%v)", p, err)
				}
			}
			if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), "boom") {
				t.Fatalf("internal error text reached the client: %s", rec.Body)
			}
		})
	}
}

func TestRouterCountsRequestsByRoute(t *testing.T) {
	h, reg := newTestRouter(nil)
	for _, p := range []string{"/things/1", "/things/2"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == "/things/{id}" && labels["status"] == "200" && m.GetCounter().GetValue() == 2 {
				return
			}
		}
	}
	t.Fatal("no http_requests_total{route=\"/things/{id}\",status=\"200\"} 2")
}

// A 405 says which methods the resource allows, in Allow and in its detail
// (the bad-input matrix, e2e TestBadInput, found it saying neither).
func TestMethodNotAllowedSaysWhatIsAllowed(t *testing.T) {
	h, _ := newTestRouter(nil)
	tests := []struct {
		method, path, allow string
	}{
		{http.MethodDelete, "/things/1", "GET"},
		{http.MethodPatch, "/things/%2E%2E", "GET"},
		{http.MethodTrace, "/things/1", "GET"},
		{http.MethodPost, "/livez", "GET"},
		{http.MethodPut, "/metrics", "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if want := tt.method + " is not allowed on this resource; it allows " + tt.allow; p.Detail != want {
				t.Errorf("detail %q, want %q", p.Detail, want)
			}
		})
	}
}
