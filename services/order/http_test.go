package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

const mugBody = `{"customer_id": "c-1", "email": "c1@example.com", "items": [{"sku": "mug", "quantity": 2}]}`

// do sends a request to the real router and returns the recorded response;
// a body is sent as application/json.
func (e *env) do(method, path, body string, headers ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	contentType := ""
	if body != "" {
		contentType = "application/json"
	}
	return servicetest.Request(e.t, e.Handler, method, path, body, append([]string{"Content-Type", contentType}, headers...)...)
}

type createdBody struct {
	OrderID     string        `json:"order_id"`
	CustomerID  string        `json:"customer_id"`
	Email       string        `json:"email"`
	Status      string        `json:"status"`
	TotalCents  int64         `json:"total_cents"`
	Currency    string        `json:"currency"`
	Items       []events.Item `json:"items"`
	Reason      string        `json:"reason"`
	CreatedAt   string        `json:"created_at"`
	UpdatedAt   string        `json:"updated_at"`
	Deadline    string        `json:"deadline"`
	ExpiredAt   string        `json:"expired_at"`
	Stuck       bool          `json:"stuck"`
	StuckReason string        `json:"stuck_reason"`
}

func decodeBody(t *testing.T, rec *httptest.ResponseRecorder) (createdBody, map[string]json.RawMessage) {
	t.Helper()
	var b createdBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(rec.Body.Bytes(), &fields)
	return b, fields
}

func hasKeys(t *testing.T, fields map[string]json.RawMessage, keys ...string) {
	t.Helper()
	if len(fields) != len(keys) {
		t.Errorf("body has fields %v, want exactly %v", mapKeys(fields), keys)
	}
	for _, k := range keys {
		if _, ok := fields[k]; !ok {
			t.Errorf("body lacks %q", k)
		}
	}
}

// sinceCreated returns the time from b's created_at to its deadline.
func sinceCreated(t *testing.T, b createdBody) time.Duration {
	t.Helper()
	created, err := time.Parse(time.RFC3339Nano, b.CreatedAt)
	if err != nil {
		t.Fatalf("created_at %q: %v", b.CreatedAt, err)
	}
	deadline, err := time.Parse(time.RFC3339Nano, b.Deadline)
	if err != nil {
		t.Fatalf("deadline %q: %v", b.Deadline, err)
	}
	return deadline.Sub(created)
}

func mapKeys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestCreateAndGetOrder(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	e.product("pen", 199)

	rec := e.do(http.MethodPost, "/orders", `{"customer_id": "c-1", "email": "c1@example.com",
		"items": [{"sku": "pen", "quantity": 3}, {"sku": "mug", "quantity": 2}]}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST /orders = %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if rec.Header().Get("Idempotent-Replayed") != "" {
		t.Error("a first request is marked replayed")
	}
	created, fields := decodeBody(t, rec)
	hasKeys(t, fields, "order_id", "customer_id", "email", "status", "total_cents", "currency", "items", "reason", "created_at", "deadline")
	if _, err := uuid.Parse(created.OrderID); err != nil {
		t.Fatalf("order_id %q: %v", created.OrderID, err)
	}
	if loc := rec.Header().Get("Location"); loc != "/orders/"+created.OrderID {
		t.Errorf("Location = %q", loc)
	}
	wantItems := []events.Item{{SKU: "mug", Quantity: 2, UnitPriceCents: 1250}, {SKU: "pen", Quantity: 3, UnitPriceCents: 199}}
	if created.CustomerID != "c-1" || created.Email != "c1@example.com" || created.Status != "PENDING" ||
		created.TotalCents != 2*1250+3*199 || created.Currency != "USD" || created.Reason != "" ||
		len(created.Items) != 2 || created.Items[0] != wantItems[0] || created.Items[1] != wantItems[1] {
		t.Errorf("created = %+v", created)
	}
	if ts, err := time.Parse(time.RFC3339Nano, created.CreatedAt); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("created_at = %q (%v)", created.CreatedAt, err)
	}
	if d := sinceCreated(t, created); d != testDeadline {
		t.Errorf("deadline %s is created_at + %v, want + %v", created.Deadline, d, testDeadline)
	}

	// The OrderCreated event (v2) is in the outbox, from the same transaction.
	rows := e.outbox(events.TypeOrderCreated)
	if len(rows) != 1 {
		t.Fatalf("outbox has %d OrderCreated, want 1", len(rows))
	}
	if rows[0].Topic != events.TopicOrders || rows[0].Key != created.OrderID || rows[0].Envelope.Source != "order" || rows[0].Envelope.SchemaVersion != 2 {
		t.Errorf("outbox row = %+v", rows[0])
	}
	ev, err := events.Decode[events.OrderCreated](rows[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if ev.OrderID != created.OrderID || ev.CustomerID != "c-1" || ev.Email != "c1@example.com" || ev.Currency != "USD" ||
		ev.TotalCents != created.TotalCents || len(ev.Items) != 2 ||
		ev.Items[0] != (events.Item{SKU: "mug", Quantity: 2, UnitPriceCents: 1250}) ||
		ev.Items[1] != (events.Item{SKU: "pen", Quantity: 3, UnitPriceCents: 199}) {
		t.Errorf("OrderCreated = %+v", ev)
	}
	if got := servicetest.Metric(t, e.Registry, "orders_created_total"); got != 1 {
		t.Errorf("orders_created_total = %v, want 1", got)
	}

	// A later price change does not change the order.
	e.product("mug", 9999)

	rec = e.do(http.MethodGet, "/orders/"+created.OrderID, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET = %d %s", rec.Code, rec.Body)
	}
	got, fields := decodeBody(t, rec)
	hasKeys(t, fields, "order_id", "customer_id", "email", "status", "total_cents", "currency", "items", "reason", "created_at", "updated_at",
		"deadline", "stuck", "dead_letters")
	if got.OrderID != created.OrderID || got.Status != "PENDING" || got.TotalCents != created.TotalCents ||
		got.CreatedAt != created.CreatedAt || got.UpdatedAt != created.CreatedAt ||
		got.Deadline != created.Deadline || got.Stuck || got.StuckReason != "" ||
		len(got.Items) != 2 || got.Items[0] != wantItems[0] || got.Items[1] != wantItems[1] {
		t.Errorf("GET = %+v, created %+v", got, created)
	}
}

func TestCreateOrderIdempotent(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	e.product("pen", 199)
	const key = "key-0001"

	first := e.do(http.MethodPost, "/orders", mugBody, "Idempotency-Key", key)
	if first.Code != http.StatusCreated {
		t.Fatalf("first POST = %d %s", first.Code, first.Body)
	}
	id := first.Header().Get("Location")

	t.Run("same body replays the same order", func(t *testing.T) {
		again := e.do(http.MethodPost, "/orders", mugBody, "Idempotency-Key", key)
		if again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay = %d %v %s", again.Code, again.Header(), again.Body)
		}
		if again.Body.String() != first.Body.String() || again.Header().Get("Location") != id {
			t.Errorf("replay body %s\nwant %s", again.Body, first.Body)
		}
	})
	t.Run("same items listed differently replay too", func(t *testing.T) {
		e.do(http.MethodPost, "/orders", `{"customer_id":"c-2","email":"c2@example.com","items":[{"sku":"mug","quantity":1},{"sku":"pen","quantity":2}]}`, "Idempotency-Key", "key-0002")
		again := e.do(http.MethodPost, "/orders", `{"items":[{"quantity":2,"sku":"pen"},{"sku":"mug","quantity":1}],"email":"c2@example.com","customer_id":"c-2"}`, "Idempotency-Key", "key-0002")
		if again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay = %d %s", again.Code, again.Body)
		}
	})
	t.Run("replay after the order moved on gives the original response", func(t *testing.T) {
		if _, err := e.Pool.Exec(e.ctx, `UPDATE orders SET status = 'PAID', updated_at = now() WHERE id = $1`, strings.TrimPrefix(id, "/orders/")); err != nil {
			t.Fatal(err)
		}
		again := e.do(http.MethodPost, "/orders", mugBody, "Idempotency-Key", key)
		if again.Code != http.StatusCreated || again.Body.String() != first.Body.String() {
			t.Errorf("replay = %d %s\nwant %s", again.Code, again.Body, first.Body)
		}
	})
	t.Run("different body is refused", func(t *testing.T) {
		rec := e.do(http.MethodPost, "/orders", `{"customer_id": "c-1", "email": "c1@example.com", "items": [{"sku": "mug", "quantity": 3}]}`, "Idempotency-Key", key)
		servicetest.RequireProblem(t, rec, http.StatusUnprocessableEntity)
		if !strings.Contains(rec.Body.String(), "Idempotency-Key") {
			t.Errorf("problem %s does not mention the key", rec.Body)
		}
	})
	t.Run("no key creates a new order each time", func(t *testing.T) {
		a := e.do(http.MethodPost, "/orders", mugBody)
		b := e.do(http.MethodPost, "/orders", mugBody)
		if a.Code != http.StatusCreated || b.Code != http.StatusCreated || a.Header().Get("Location") == b.Header().Get("Location") {
			t.Errorf("POSTs without key = %d %s, %d %s", a.Code, a.Header().Get("Location"), b.Code, b.Header().Get("Location"))
		}
	})

	if n := e.count("orders"); n != 4 {
		t.Errorf("%d orders, want 4 (key-0001, key-0002 and two without key)", n)
	}
	if n := e.count("idempotency_keys"); n != 2 {
		t.Errorf("%d idempotency keys, want 2", n)
	}
	if n := len(e.outbox(events.TypeOrderCreated)); n != 4 {
		t.Errorf("%d OrderCreated events, want 4", n)
	}
	if got := servicetest.Metric(t, e.Registry, "orders_created_total"); got != 4 {
		t.Errorf("orders_created_total = %v, want 4", got)
	}
}

func TestCreateOrderIdempotentRace(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	const n = 10
	var wg sync.WaitGroup
	recs := make([]*httptest.ResponseRecorder, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			recs[i] = e.do(http.MethodPost, "/orders", mugBody, "Idempotency-Key", "race-key")
		})
	}
	close(start)
	wg.Wait()
	replays := 0
	for i, rec := range recs {
		if rec.Code != http.StatusCreated {
			t.Fatalf("request %d = %d %s", i, rec.Code, rec.Body)
		}
		if rec.Body.String() != recs[0].Body.String() {
			t.Errorf("request %d body %s\nwant %s", i, rec.Body, recs[0].Body)
		}
		if rec.Header().Get("Idempotent-Replayed") == "true" {
			replays++
		}
	}
	if replays != n-1 {
		t.Errorf("%d replays, want %d", replays, n-1)
	}
	if got := e.count("orders"); got != 1 {
		t.Errorf("%d orders, want 1", got)
	}
	if got := len(e.outbox(events.TypeOrderCreated)); got != 1 {
		t.Errorf("%d OrderCreated events, want 1", got)
	}
}

func TestCreateOrderBadInput(t *testing.T) {
	e := newEnv(t)
	e.product("mug", 1250)
	e.product("pen", 199)
	e.product("gold", 60_000_000)

	item := func(sku string, qty int) string {
		b, _ := json.Marshal(map[string]any{"sku": sku, "quantity": qty})
		return string(b)
	}
	order := func(customer, email string, items ...string) string {
		c, _ := json.Marshal(customer)
		m, _ := json.Marshal(email)
		return `{"customer_id":` + string(c) + `,"email":` + string(m) + `,"items":[` + strings.Join(items, ",") + `]}`
	}
	var many []string
	for i := range 51 {
		many = append(many, item("s-"+string(rune('a'+i%26))+string(rune('a'+i/26)), 1))
	}
	tests := []struct {
		name        string
		body        string
		contentType string // default application/json; "-" for none
		headers     []string
		status      int
		fields      []string // expected keys of the problem's errors
		mention     string   // text the problem must contain
	}{
		{name: "empty body", body: "", status: 400},
		{name: "not json", body: "customer=c-1", status: 400},
		{name: "truncated json", body: `{"customer_id": "c-1"`, status: 400},
		{name: "json array", body: `[` + mugBody + `]`, status: 400},
		{name: "two objects", body: mugBody + mugBody, status: 400},
		{name: "unknown field", body: `{"customer_id":"c-1","email":"c1@example.com","items":[{"sku":"mug","quantity":1}],"admin":true}`, status: 400, mention: "admin"},
		{name: "price in item", body: `{"customer_id":"c-1","email":"c1@example.com","items":[{"sku":"mug","quantity":1,"price":1}]}`, status: 400, mention: "price"},
		{name: "unit price in item", body: `{"customer_id":"c-1","email":"c1@example.com","items":[{"sku":"mug","quantity":1,"unit_price_cents":1}]}`, status: 400, mention: "unit_price_cents"},
		{name: "quantity as string", body: `{"customer_id":"c-1","email":"c1@example.com","items":[{"sku":"mug","quantity":"2"}]}`, status: 400},
		{name: "quantity fractional", body: `{"customer_id":"c-1","email":"c1@example.com","items":[{"sku":"mug","quantity":1.5}]}`, status: 400},
		{name: "quantity huge", body: `{"customer_id":"c-1","email":"c1@example.com","items":[{"sku":"mug","quantity":1e30}]}`, status: 400},
		{name: "customer id a number", body: `{"customer_id":1,"email":"c1@example.com","items":[{"sku":"mug","quantity":1}]}`, status: 400},
		{name: "body over 64 KiB", body: order(strings.Repeat("c", 70_000), "c1@example.com", item("mug", 1)), status: 413},
		{name: "wrong content type", body: mugBody, contentType: "text/plain", status: 415},
		{name: "form content type", body: mugBody, contentType: "application/x-www-form-urlencoded", status: 415},
		{name: "missing fields", body: `{}`, status: 422, fields: []string{"customer_id", "email", "items"}},
		{name: "missing item fields", body: `{"customer_id":"c-1","email":"c1@example.com","items":[{}]}`, status: 422, fields: []string{"items[0].sku", "items[0].quantity"}},
		{name: "null items", body: `{"customer_id":"c-1","email":"c1@example.com","items":null}`, status: 422, fields: []string{"items"}},
		{name: "empty items", body: order("c-1", "c1@example.com"), status: 422, fields: []string{"items"}},
		{name: "51 items", body: order("c-1", "c1@example.com", many...), status: 422, fields: []string{"items"}},
		{name: "quantity 0", body: order("c-1", "c1@example.com", item("mug", 0)), status: 422, fields: []string{"items[0].quantity"}},
		{name: "quantity 1001", body: order("c-1", "c1@example.com", item("mug", 1001)), status: 422, fields: []string{"items[0].quantity"}},
		{name: "quantity negative", body: order("c-1", "c1@example.com", item("mug", -5)), status: 422, fields: []string{"items[0].quantity"}},
		{name: "duplicate skus", body: order("c-1", "c1@example.com", item("mug", 1), item("mug", 2)), status: 422, fields: []string{"items[1].sku"}},
		{name: "unknown sku", body: order("c-1", "c1@example.com", item("mug", 1), item("teapot", 1), item("kettle", 1)), status: 422,
			fields: []string{"items[1].sku", "items[2].sku"}, mention: "teapot"},
		{name: "total over the money limit", body: order("c-1", "c1@example.com", item("gold", 2)), status: 422, fields: []string{"items"}},
		{name: "sql in customer id", body: order("1'; DROP TABLE orders;--", "c1@example.com", item("mug", 1)), status: 422, fields: []string{"customer_id"}},
		{name: "sql in sku", body: order("c-1", "c1@example.com", item("mug' OR '1'='1", 1)), status: 422, fields: []string{"items[0].sku"}},
		{name: "customer id of 10 kB", body: order(strings.Repeat("c", 10_000), "c1@example.com", item("mug", 1)), status: 422, fields: []string{"customer_id"}},
		{name: "email invalid", body: order("c-1", "not an email", item("mug", 1)), status: 422, fields: []string{"email"}},
		{name: "email with display name", body: order("c-1", "Carl <c1@example.com>", item("mug", 1)), status: 422, fields: []string{"email"}},
		{name: "email too long", body: order("c-1", strings.Repeat("a", 250)+"@example.com", item("mug", 1)), status: 422, fields: []string{"email"}},
		{name: "empty idempotency key", body: mugBody, headers: []string{"Idempotency-Key", ""}, status: 400, mention: "Idempotency-Key"},
		{name: "idempotency key of 256", body: mugBody, headers: []string{"Idempotency-Key", strings.Repeat("k", 256)}, status: 400},
		{name: "idempotency key with space", body: mugBody, headers: []string{"Idempotency-Key", "a key"}, status: 400},
		{name: "idempotency key not ascii", body: mugBody, headers: []string{"Idempotency-Key", "clé"}, status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(tt.body))
			switch tt.contentType {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				req.Header.Set("Content-Type", tt.contentType)
			}
			for i := 0; i+1 < len(tt.headers); i += 2 {
				req.Header[tt.headers[i]] = []string{tt.headers[i+1]}
			}
			rec := servicetest.Serve(t, e.Handler, req)
			p := servicetest.RequireProblem(t, rec, tt.status)
			if tt.fields != nil {
				errs := p.Errors
				if len(errs) != len(tt.fields) {
					t.Errorf("errors = %v, want %v", errs, tt.fields)
				}
				for _, f := range tt.fields {
					if _, ok := errs[f]; !ok {
						t.Errorf("errors = %v, want %q", errs, f)
					}
				}
			}
			if tt.mention != "" && !strings.Contains(rec.Body.String(), tt.mention) {
				t.Errorf("problem %s does not mention %q", rec.Body, tt.mention)
			}
			if strings.Contains(strings.ToLower(rec.Body.String()), "sql") || strings.Contains(rec.Body.String(), "pgx") {
				t.Errorf("problem leaks internals: %s", rec.Body)
			}
			e.assertNothingStored(t)
		})
	}
	t.Run("two idempotency keys", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(mugBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("Idempotency-Key", "a")
		req.Header.Add("Idempotency-Key", "b")
		rec := servicetest.Serve(t, e.Handler, req)
		servicetest.RequireProblem(t, rec, http.StatusBadRequest)
		e.assertNothingStored(t)
	})
	t.Run("no content type is taken as json", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/orders", bytes.NewReader([]byte(mugBody)))
		rec := servicetest.Serve(t, e.Handler, req)
		if rec.Code != http.StatusCreated {
			t.Errorf("status = %d %s", rec.Code, rec.Body)
		}
	})
}

func TestGetOrderNotFound(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{
		uuid.NewString(),
		"not-a-uuid",
		"00000000-0000-0000-0000-000000000000",
		"1'; DROP TABLE orders;--",
		strings.Repeat("a", 10_000),
		"{" + uuid.NewString() + "}",
	} {
		t.Run(id[:min(len(id), 40)], func(t *testing.T) {
			rec := e.do(http.MethodGet, "/orders/"+url.PathEscape(id), "")
			servicetest.RequireProblem(t, rec, http.StatusNotFound)
		})
	}
	t.Run("wrong method", func(t *testing.T) {
		rec := e.do(http.MethodDelete, "/orders/"+uuid.NewString(), "")
		servicetest.RequireProblem(t, rec, http.StatusMethodNotAllowed)
	})
}
