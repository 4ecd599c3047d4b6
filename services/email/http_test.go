package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

func get(t *testing.T, ts testService, rawQuery string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/emails", nil)
	req.URL.RawQuery = rawQuery
	return servicetest.Serve(t, ts.Handler, req)
}

func TestListEmails(t *testing.T) {
	ts := newTestService(t, nil)
	orderID := newOrderID()
	// Both pending, then sent together when the recipient arrives: the
	// list is in the order they were sent.
	mustApply(t, ts, servicetest.Event(t, "test", cancelled(orderID, events.ReasonPaymentFailed)))
	mustApply(t, ts, servicetest.Event(t, "test", shipped(orderID)))
	mustApply(t, ts, servicetest.Event(t, "test", created(orderID, ada)))
	other := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", created(other, "bob@example.com")))
	mustApply(t, ts, servicetest.Event(t, "test", shipped(other)))

	for _, q := range []string{"order_id=" + orderID, "order_id=" + strings.ToUpper(orderID)} {
		rec := get(t, ts, q)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("GET ?%s: %d %s %s", q, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		var got []map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("GET ?%s = %d emails, want 2: %s", q, len(got), rec.Body)
		}
		wantKinds := []string{KindOrderCancelled, KindOrderShipped}
		wantSubjects := []string{"Your order " + orderID + " was cancelled", "Your order " + orderID + " has shipped"}
		var prev time.Time
		for i, e := range got {
			if len(e) != 5 || e["order_id"] != orderID || e["kind"] != wantKinds[i] || e["to"] != ada || e["subject"] != wantSubjects[i] {
				t.Errorf("email %d = %v, want exactly order_id, kind %s, to, subject, sent_at", i, e, wantKinds[i])
			}
			sentAt, err := time.Parse(time.RFC3339Nano, e["sent_at"].(string))
			if err != nil || sentAt.Before(prev) {
				t.Errorf("email %d sent_at %v (err %v), want a time not before %v", i, e["sent_at"], err, prev)
			}
			prev = sentAt
		}
	}
}

func TestListEmailsEmpty(t *testing.T) {
	ts := newTestService(t, nil)
	pendingOrder := newOrderID()
	mustApply(t, ts, servicetest.Event(t, "test", shipped(pendingOrder)))
	for name, id := range map[string]string{"unknown order": uuid.NewString(), "only pending emails": pendingOrder} {
		t.Run(name, func(t *testing.T) {
			rec := get(t, ts, "order_id="+id)
			if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "[]" {
				t.Errorf("status %d body %q, want 200 []", rec.Code, rec.Body)
			}
		})
	}
}

func TestListEmailsBadOrderID(t *testing.T) {
	ts := newTestService(t, nil)
	tests := []struct {
		name  string
		query string
		want  string // the message for order_id
	}{
		{"missing", "", "is required"},
		{"other parameter only", "order=" + uuid.NewString(), "is required"},
		{"empty", "order_id=", "is required"},
		{"repeated", "order_id=" + uuid.NewString() + "&order_id=" + uuid.NewString(), "give it once"},
		{"not a UUID", "order_id=order-1", "must be a UUID"},
		{"UUID without dashes", "order_id=" + strings.ReplaceAll(uuid.NewString(), "-", ""), "must be a UUID"},
		{"URN form", "order_id=urn:uuid:" + uuid.NewString(), "must be a UUID"},
		{"braces", "order_id=" + url.QueryEscape("{"+uuid.NewString()[:34]+"}"), "must be a UUID"},
		{"SQL-looking", "order_id=" + url.QueryEscape("1' OR '1'='1"), "must be a UUID"},
		{"SQL-looking, 36 bytes", "order_id=" + url.QueryEscape("'; DROP TABLE emails; --"+strings.Repeat(" ", 12)), "must be a UUID"},
		{"10 kB", "order_id=" + strings.Repeat("a", 10<<10), "must be a UUID"},
		{"bad escape", "order_id=%zz", "is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := get(t, ts, tt.query)
			p := servicetest.RequireProblem(t, rec, http.StatusBadRequest)
			if p.Errors["order_id"] != tt.want {
				t.Errorf("problem = %+v, want order_id %q", p, tt.want)
			}
		})
	}
}

func TestEmailsWrongMethod(t *testing.T) {
	ts := newTestService(t, nil)
	rec := servicetest.Request(t, ts.Handler, http.MethodPost, "/emails?order_id="+uuid.NewString(), `{"kind":"order_shipped"}`)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("POST: %d %s, want 405 problem", rec.Code, rec.Header().Get("Content-Type"))
	}
	if got := ts.emails(t); len(got) != 0 {
		t.Errorf("emails = %+v, want none", got)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	ts := newTestService(t, nil)
	mustApply(t, ts, servicetest.Event(t, "test", shipped(newOrderID())))
	body := servicetest.Request(t, ts.Handler, http.MethodGet, "/metrics", "").Body.String()
	for _, want := range []string{"emails_pending 1", `emails_sent_total{kind="order_shipped"} 0`, `emails_sent_total{kind="order_cancelled"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
