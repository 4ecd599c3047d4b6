package outbox_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/sagashop/sagashop/pkg/outbox"
)

func TestAdminRoutesListAndRequeueDeadLetters(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	ctx := context.Background()
	e := newEvent(t, "admin")
	insertRaw(t, pool, "orders.events", e)
	var id int64
	if err := pool.QueryRow(ctx, `WITH moved AS (DELETE FROM outbox RETURNING *)
		INSERT INTO outbox_dead_letters (id, event_id, topic, key, envelope, created_at, reason, error)
		SELECT id, event_id, topic, key, envelope, created_at, 'unknown_topic', 'gone' FROM moved RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	outbox.AdminRoutes(pool)(r)
	do := func(method, path string) (int, map[string]json.RawMessage) {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		var body map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, rec.Code, rec.Body, err)
		}
		return rec.Code, body
	}

	code, body := do(http.MethodGet, "/admin/outbox/dead-letters")
	var list []outbox.DeadLetter
	if err := json.Unmarshal(body["dead_letters"], &list); err != nil || code != http.StatusOK {
		t.Fatalf("list: %d %s %v", code, body, err)
	}
	if len(list) != 1 || list[0].ID != id || list[0].EventID != e.ID || list[0].Reason != "unknown_topic" || list[0].Error != "gone" || list[0].Type != e.Type {
		t.Fatalf("list %+v", list)
	}
	if code, _ := do(http.MethodGet, "/admin/outbox/dead-letters?limit=0"); code != http.StatusUnprocessableEntity {
		t.Errorf("limit=0: %d, want 422", code)
	}
	if code, _ := do(http.MethodPost, "/admin/outbox/dead-letters/x/requeue"); code != http.StatusNotFound {
		t.Errorf("requeue x: %d, want 404", code)
	}

	path := "/admin/outbox/dead-letters/" + strconv.FormatInt(id, 10) + "/requeue"
	if code, body := do(http.MethodPost, path); code != http.StatusOK || string(body["outbox_id"]) == "" {
		t.Fatalf("requeue: %d %s", code, body)
	}
	if n := pendingRows(t, pool); n != 1 {
		t.Fatalf("%d rows in the outbox after requeue, want 1", n)
	}
	if code, body := do(http.MethodPost, path); code != http.StatusNotFound {
		t.Fatalf("second requeue: %d %s, want 404", code, body)
	}
	if code, body := do(http.MethodGet, "/admin/outbox/dead-letters"); code != http.StatusOK || string(body["dead_letters"]) != "[]" {
		t.Fatalf("list after requeue: %d %s", code, body)
	}
}
