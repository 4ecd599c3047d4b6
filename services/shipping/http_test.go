package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

func get(t *testing.T, ts testService, path string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.URL = &url.URL{Path: path, RawPath: path}
	return servicetest.Serve(t, ts.Handler, req)
}

func TestGetShipment(t *testing.T) {
	ts := newTestService(t)
	orderID := uuid.Must(uuid.NewV7()).String()
	if err := ts.Apply(t, servicetest.Event(t, "test", reserved(orderID))); err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{orderID, strings.ToUpper(orderID)} {
		rec := get(t, ts, "/shipments/"+id)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s %s", id, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		var got map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got["order_id"] != orderID || got["status"] != StatusShipped || !ValidTrackingNumber(got["tracking_number"].(string)) {
			t.Errorf("GET %s = %v, want exactly order_id, tracking_number and status", id, got)
		}
	}
}

func TestGetShipmentNotFound(t *testing.T) {
	ts := newTestService(t)
	tests := []struct {
		name string
		path string
	}{
		{"order not shipped yet", "/shipments/" + uuid.NewString()},
		{"not a UUID", "/shipments/order-1"},
		{"UUID without dashes", "/shipments/" + strings.ReplaceAll(uuid.NewString(), "-", "")},
		{"URN form", "/shipments/urn:uuid:" + uuid.NewString()},
		{"SQL-looking", "/shipments/" + url.PathEscape("1' OR '1'='1")},
		{"SQL-looking, raw", "/shipments/x';DROP%20TABLE%20shipments;--"},
		{"10 kB id", "/shipments/" + strings.Repeat("a", 10<<10)},
		{"empty id", "/shipments/"},
		{"too deep", "/shipments/" + uuid.NewString() + "/items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := get(t, ts, tt.path)
			if rec.Code != http.StatusNotFound {
				t.Fatalf("status = %d, want 404: %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("content type = %q, want application/problem+json", ct)
			}
		})
	}
}

func TestShipmentsWrongMethod(t *testing.T) {
	ts := newTestService(t)
	rec := servicetest.Request(t, ts.Handler, http.MethodPost, "/shipments/"+uuid.NewString(), `{}`)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status = %d, want 405", rec.Code)
	}
	if n := servicetest.Count(t, ts.pool, `SELECT count(*) FROM shipments`); n != 0 {
		t.Errorf("%d shipments stored, want none", n)
	}
}
