package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The service's side of these endpoints is tested in pkg/outbox; here, what
// sagashopctl sends and prints.
func TestOutboxListAndRequeue(t *testing.T) {
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests = append(requests, r.Method+" "+r.URL.RequestURI())
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/admin/outbox/dead-letters":
			w.Write([]byte(`{"dead_letters":[{"id":7,"event_id":"e1","type":"OrderCreated","topic":"orders.events","key":"o1",
				"bytes":2000000,"created_at":"2026-12-01T10:00:00Z","failed_at":"2026-12-01T10:00:01Z","reason":"message_too_large",
				"error":"[10] Message Size Too Large"}]}`))
		case r.Method == http.MethodPost && r.URL.Path == "/admin/outbox/dead-letters/7/requeue":
			w.Write([]byte(`{"id":7,"outbox_id":42}`))
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"status":404,"title":"dead letter not found"}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	getenv := func(string) string { return "" }

	var out bytes.Buffer
	if err := run(ctx, []string{"outbox", "list", "-service", "order", "-url", srv.URL, "-limit", "5"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ID", "message_too_large", "orders.events", "OrderCreated", "2000000", "Message Size Too Large"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("list output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(ctx, []string{"outbox", "requeue", "-url", srv.URL, "7"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "requeued dead letter 7 as outbox row 42") {
		t.Errorf("requeue output %q", out.String())
	}
	err := run(ctx, []string{"outbox", "requeue", "-url", srv.URL, "8"}, getenv, &out)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "dead letter not found") {
		t.Errorf("requeue of an unknown id: %v", err)
	}
	if got := strings.Join(requests, ", "); got != "GET /admin/outbox/dead-letters?limit=5, POST /admin/outbox/dead-letters/7/requeue, POST /admin/outbox/dead-letters/8/requeue" {
		t.Errorf("requests %s", got)
	}

	for _, args := range [][]string{
		{"outbox"}, {"outbox", "show"}, {"outbox", "list"}, {"outbox", "list", "-service", "billing"},
		{"outbox", "requeue", "-service", "order"}, {"outbox", "requeue", "-service", "order", "x"},
	} {
		if err := run(ctx, args, getenv, &out); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
