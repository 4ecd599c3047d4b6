package web_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/web"
)

// countingBody is a request body of n bytes of JSON-ish filler that counts
// what the client's transport has read of it, that is, sent.
type countingBody struct {
	left int64
	sent atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > b.left {
		n = b.left
	}
	for i := range p[:n] {
		p[i] = ' '
	}
	b.left -= n
	b.sent.Add(n)
	return int(n), nil
}

func (b *countingBody) Close() error { return nil }

// TestLargeBodyRefusedBeforeUpload sends bodies over the limit to a real
// server over a real connection, as a Go client does.
func TestLargeBodyRefusedBeforeUpload(t *testing.T) {
	rcfg := web.RouterConfig{Service: "test", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		TracerProvider: noop.NewTracerProvider(), Registry: prometheus.NewRegistry()}
	r, err := web.NewRouter(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	problems := web.Problems{}
	r.Post("/things", func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := web.Decode(w, r, &v); err != nil {
			problems.Write(w, r, err)
			return
		}
		web.Encode(w, http.StatusCreated, v)
	})
	srv := httptest.NewServer(web.Handler(r, rcfg))
	defer srv.Close()

	const declared = 8 << 20
	tests := []struct {
		name     string
		expect   bool  // Expect: 100-continue
		length   int64 // Content-Length; -1: chunked
		maxSent  int64 // the most the client may have uploaded
		attempts int
	}{
		// The client waits for 100 Continue, which never comes: it sends
		// nothing of the body.
		{"declared 8 MiB with Expect: 100-continue", true, declared, 0, 5},
		// The client sends at once; it must see the 413, not a reset, and
		// stops with what the socket buffers took.
		{"declared 8 MiB without Expect", false, declared, declared, 20},
		// Unknown length: the limit is found by reading.
		{"chunked past the limit", false, -1, declared, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
			defer client.CloseIdleConnections()
			for i := 0; i < tt.attempts; i++ {
				body := &countingBody{left: declared}
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/things", body)
				if err != nil {
					t.Fatal(err)
				}
				req.ContentLength = tt.length
				req.Header.Set("Content-Type", "application/json")
				if tt.expect {
					req.Header.Set("Expect", "100-continue")
				}
				res, err := client.Do(req)
				if err != nil {
					t.Fatalf("attempt %d: %v (after sending %d bytes)", i, err, body.sent.Load())
				}
				var p web.Problem
				err = json.NewDecoder(res.Body).Decode(&p)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusRequestEntityTooLarge || p.Status != http.StatusRequestEntityTooLarge {
					t.Fatalf("attempt %d: %s, problem %+v (%v); want 413", i, res.Status, p, err)
				}
				if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("content type %q", ct)
				}
				if !res.Close {
					t.Fatalf("attempt %d: the 413 keeps the connection open, with a body still to come on it", i)
				}
				if sent := body.sent.Load(); sent > tt.maxSent {
					t.Fatalf("attempt %d: the client uploaded %d bytes, want at most %d", i, sent, tt.maxSent)
				}
				if i == 0 {
					t.Logf("uploaded %d of %d bytes", body.sent.Load(), declared)
				}
			}
		})
	}

	// A body within the limit is still read and answered.
	res, err := http.Post(srv.URL+"/things", "application/json", strings.NewReader(`{"a": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("small body: %s", res.Status)
	}
}
