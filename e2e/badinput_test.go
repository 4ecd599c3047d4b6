package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/deadletter"
	"github.com/sagashop/sagashop/pkg/events"
)

// TestBadInput is the bad-input matrix against the live system. Over HTTP,
// well over a hundred malformed requests across every endpoint of the five
// services: each is refused with its own 4xx and a problem+json body that
// says why, and none changes a row of any service (orders, balances, stock,
// shipments, emails, outbox). Over Kafka, malformed messages produced
// straight onto the topics the consumers read: each is dead-lettered once
// by every consumer group that reads its topic and handles its type, with
// the reason that fits, each message of a type a group does not handle is
// skipped by it, nothing else is dead-lettered and nothing is applied.
// Through the whole run no response is a 5xx, no service exits, and an order
// placed afterwards still ships.
func TestBadInput(t *testing.T) {
	// Newer schema versions are retried for CONSUMER_UNKNOWN_VERSION_WAIT
	// before they are dead-lettered (15 min by default).
	env := map[string][]string{}
	for _, name := range services {
		env[name] = []string{"CONSUMER_UNKNOWN_VERSION_WAIT=2s"}
	}
	s := startStackEnv(t, env)
	fx := s.badInputFixture()

	before := s.fingerprint()
	t.Run("http", func(t *testing.T) {
		s.with(t).badRequests(fx)
	})
	if after := s.fingerprint(); !maps.Equal(before, after) {
		t.Errorf("refused requests changed the state: %s", fingerprintDiff(before, after))
	}

	letters := 0
	t.Run("kafka", func(t *testing.T) {
		letters = s.with(t).badMessages(fx)
	})
	if after := s.fingerprint(); !maps.Equal(before, after) {
		t.Errorf("malformed messages changed the state: %s", fingerprintDiff(before, after))
	}

	// Whole run: no 5xx on any service's own count, every service alive and
	// ready, and the consumers not stalled: a normal order still ships.
	for _, name := range services {
		if n := s.metric(name, "http_requests_total", `status="5`); n != 0 {
			t.Errorf("%s answered %v requests with a 5xx", name, n)
		}
		select {
		case <-s.proc(name).exited:
			t.Errorf("%s exited during the matrix", name)
			continue
		default:
		}
		if code := s.call(http.MethodGet, name, "/readyz", nil, nil); code != http.StatusOK {
			t.Errorf("%s /readyz: %d after the matrix", name, code)
		}
	}
	o := s.placeOrder(fx.customer, item{SKU: fx.sku, Quantity: 1})
	if final := s.waitTerminal(o.OrderID); final.Status != "SHIPPED" {
		t.Fatalf("order after the matrix: %+v", final)
	}
	s.waitEmail(o.OrderID, "order_shipped")
	if n := len(s.deadLetters()); n != letters {
		t.Errorf("%d dead letters after the last order, %d after the matrix", n, letters)
	}
}

// badInputFixture is what the matrix needs to exist: products (one at the
// highest price, one at the most stock), an account with a deposit made
// under an Idempotency-Key, and an order placed under one that has shipped.
type badInputFixture struct {
	sku, maxPriceSKU, fullSKU string
	customer                  string
	orderKey, depositKey      string
	orderID                   string
}

func (s *stack) badInputFixture() badInputFixture {
	t := s.t
	t.Helper()
	fx := badInputFixture{sku: "bi-mug", maxPriceSKU: "bi-gold", fullSKU: "bi-full", customer: "bi-cust",
		orderKey: "bi-order-key-1", depositKey: "bi-deposit-key-1"}
	s.putProduct(fx.sku, 500, 100)
	s.putProduct(fx.maxPriceSKU, 100_000_000, 10)
	s.putProduct(fx.fullSKU, 100, 1_000_000)
	if code := s.call(http.MethodPost, "payment", "/accounts/"+fx.customer+"/deposits", map[string]any{"amount_cents": 1_000_000}, nil,
		"Idempotency-Key", fx.depositKey); code != http.StatusCreated {
		t.Fatalf("deposit: %d", code)
	}
	body := map[string]any{"customer_id": fx.customer, "email": fx.customer + "@example.com", "items": []item{{SKU: fx.sku, Quantity: 1}}}
	eventually(t, 30*time.Second, "the order placed under its Idempotency-Key", func() bool {
		var o order
		code := s.call(http.MethodPost, "order", "/orders", body, &o, "Idempotency-Key", fx.orderKey)
		fx.orderID = o.OrderID
		return code == http.StatusCreated
	})
	if final := s.waitTerminal(fx.orderID); final.Status != "SHIPPED" {
		t.Fatalf("fixture order %+v", final)
	}
	s.waitEmail(fx.orderID, "order_shipped")
	eventually(t, sagaTimeout, "the fixture order's reservation released", func() bool {
		p := s.product(fx.sku)
		return p.Available == 99 && p.Reserved == 0
	})
	// The order service learns prices from inventory's events: wait until
	// it prices the highest-priced product (an order of two is over the
	// total's limit, rather than of an unknown SKU).
	eventually(t, 30*time.Second, "the order service to know "+fx.maxPriceSKU, func() bool {
		var p problem
		s.call(http.MethodPost, "order", "/orders", map[string]any{"customer_id": fx.customer, "email": "a@example.com",
			"items": []item{{SKU: fx.maxPriceSKU, Quantity: 2}}}, &p)
		return strings.Contains(p.Errors["items"], "exceeds")
	})
	// Every outbox is drained (the relays delete what they published).
	eventually(t, 30*time.Second, "every outbox drained", func() bool {
		f := s.fingerprint()
		for _, name := range services {
			if f[name+"_svc.outbox rows"] != "0" {
				return false
			}
		}
		return true
	})
	return fx
}

// fingerprint is the state of every service that a request or a message
// could change: a digest of each table's rows, the outbox's rows still
// waiting and how many were ever written (its identity), and the outbox's
// dead letters. The inbox, the relay's lease and the order service's record
// of dead letters are left out: they change as the system runs.
func (s *stack) fingerprint() map[string]string {
	s.t.Helper()
	tables := map[string][]string{
		"order":     {"orders", "order_items", "idempotency_keys", "products"},
		"payment":   {"accounts", "deposits", "payments", "deposit_idempotency_keys"},
		"inventory": {"products", "reservations"},
		"shipping":  {"shipments"},
		"email":     {"recipients", "emails"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, s.adminURL())
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close(ctx)
	out := map[string]string{}
	for name, ts := range tables {
		schema := name + "_svc"
		for _, table := range append(ts, "outbox_dead_letters") {
			var digest string
			q := fmt.Sprintf(`SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM %s.%s t`, schema, table)
			if err := db.QueryRow(ctx, q).Scan(&digest); err != nil {
				s.t.Fatalf("%s: %v", q, err)
			}
			out[schema+"."+table] = digest
		}
		var rows, written string
		if err := db.QueryRow(ctx, fmt.Sprintf(`SELECT count(*)::text FROM %s.outbox`, schema)).Scan(&rows); err != nil {
			s.t.Fatal(err)
		}
		if err := db.QueryRow(ctx, `SELECT coalesce(last_value, 0)::text FROM pg_sequences WHERE schemaname = $1 AND sequencename = 'outbox_id_seq'`,
			schema).Scan(&written); err != nil {
			s.t.Fatalf("outbox sequence of %s: %v", schema, err)
		}
		out[schema+".outbox rows"], out[schema+".outbox written"] = rows, written
	}
	return out
}

func fingerprintDiff(a, b map[string]string) string {
	var diffs []string
	for k, v := range a {
		if b[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s %s -> %s", k, v, b[k]))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}

// badRequest is one row of the HTTP matrix.
type badRequest struct {
	name    string
	service string
	method  string
	path    string
	body    string
	header  []string // name, value pairs, each added (a name twice is sent twice)
	noCT    bool     // send the body without a Content-Type
	chunked bool     // send the body with no length (chunked)
	raw     string   // a raw HTTP/1.1 request, for what a Go client will not send
	status  int
	field   string // a field the problem's errors must name
	// plain: net/http answers it itself, before any handler runs (a
	// malformed request line or header block), with text/plain.
	plain bool
}

func (s *stack) badRequests(fx badInputFixture) {
	t := s.t
	uuidNew := uuid.NewString()
	order := func(customer, email, items string) string {
		return fmt.Sprintf(`{"customer_id":%s,"email":%s,"items":%s}`, customer, email, items)
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	okCustomer, okEmail := q(fx.customer), q(fx.customer+"@example.com")
	okItems := `[{"sku":"bi-mug","quantity":1}]`
	line := func(qty string) string { return `[{"sku":"bi-mug","quantity":` + qty + `}]` }
	var fifty []string
	for i := range 51 {
		fifty = append(fifty, fmt.Sprintf(`{"sku":"bi-sku-%d","quantity":1}`, i))
	}
	big := strings.Repeat(" ", 64<<10) // with the JSON around it, over web.MaxBodyBytes
	post := func(name, body string, status int, field string, header ...string) badRequest {
		return badRequest{name: "POST /orders: " + name, service: "order", method: http.MethodPost, path: "/orders", body: body, status: status, field: field, header: header}
	}
	deposit := func(name, body string, status int, field string, header ...string) badRequest {
		return badRequest{name: "POST deposits: " + name, service: "payment", method: http.MethodPost, path: "/accounts/" + fx.customer + "/deposits",
			body: body, status: status, field: field, header: header}
	}
	put := func(name, sku, body string, status int, field string, header ...string) badRequest {
		return badRequest{name: "PUT /products: " + name, service: "inventory", method: http.MethodPut, path: "/products/" + sku, body: body,
			status: status, field: field, header: header}
	}
	restock := func(name, sku, body string, status int, field string, header ...string) badRequest {
		return badRequest{name: "POST restock: " + name, service: "inventory", method: http.MethodPost, path: "/products/" + sku + "/restock",
			body: body, status: status, field: field, header: header}
	}
	get := func(service, path string, status int, field string) badRequest {
		return badRequest{name: "GET " + path, service: service, method: http.MethodGet, path: path, status: status, field: field}
	}
	method := func(service, m, path string) badRequest {
		return badRequest{name: m + " " + path, service: service, method: m, path: path, status: http.StatusMethodNotAllowed}
	}

	cases := []badRequest{
		// POST /orders: bodies.
		post("truncated JSON", `{"customer_id":`, 400, ""),
		post("not JSON", `hello`, 400, ""),
		post("an array", `[]`, 400, "body"),
		post("a string", `"order"`, 400, "body"),
		post("null", `null`, 422, "customer_id"),
		post("empty body", ``, 400, ""),
		post("trailing garbage", order(okCustomer, okEmail, okItems)+` x`, 400, ""),
		post("two objects", order(okCustomer, okEmail, okItems)+order(okCustomer, okEmail, okItems), 400, ""),
		post("unknown field", `{"customer_id":"bi-cust","email":"bi-cust@example.com","items":[{"sku":"bi-mug","quantity":1}],"total_cents":1}`, 400, ""),
		post("unknown item field", order(okCustomer, okEmail, `[{"sku":"bi-mug","quantity":1,"unit_price_cents":0}]`), 400, ""),
		post("customer_id a number", order(`42`, okEmail, okItems), 400, "customer_id"),
		post("items an object", order(okCustomer, okEmail, `{"sku":"bi-mug"}`), 400, "items"),
		post("quantity a string", order(okCustomer, okEmail, line(`"1"`)), 400, "items.quantity"),
		post("quantity a fraction", order(okCustomer, okEmail, line(`1.5`)), 400, "items.quantity"),
		post("quantity in exponent form", order(okCustomer, okEmail, line(`1e3`)), 400, "items.quantity"),
		post("quantity past int64", order(okCustomer, okEmail, line(`9223372036854775808`)), 400, "items.quantity"),
		post("quantity 0", order(okCustomer, okEmail, line(`0`)), 422, "items[0].quantity"),
		post("quantity -1", order(okCustomer, okEmail, line(`-1`)), 422, "items[0].quantity"),
		post("quantity max+1", order(okCustomer, okEmail, line(`1001`)), 422, "items[0].quantity"),
		post("quantity null", order(okCustomer, okEmail, line(`null`)), 422, "items[0].quantity"),
		post("no items", order(okCustomer, okEmail, `[]`), 422, "items"),
		post("items null", order(okCustomer, okEmail, `null`), 422, "items"),
		post("51 items", order(okCustomer, okEmail, "["+strings.Join(fifty, ",")+"]"), 422, "items"),
		post("no customer_id", `{"email":"bi-cust@example.com","items":[{"sku":"bi-mug","quantity":1}]}`, 422, "customer_id"),
		post("no email", `{"customer_id":"bi-cust","items":[{"sku":"bi-mug","quantity":1}]}`, 422, "email"),
		post("email no address", order(okCustomer, q("not-an-email"), okItems), 422, "email"),
		post("email with a display name", order(okCustomer, q("Bi <bi-cust@example.com>"), okItems), 422, "email"),
		post("email 255 characters", order(okCustomer, q(strings.Repeat("a", 243)+"@example.com"), okItems), 422, "email"),
		post("email with a header injected", order(okCustomer, q("bi-cust@example.com\r\nBcc: all@example.com"), okItems), 422, "email"),
		post("email with NUL", order(okCustomer, q("bi-cust\x00@example.com"), okItems), 422, "email"),
		post("customer_id right-to-left override", order(q("bi-\u202ecust"), okEmail, okItems), 422, "customer_id"),
		post("customer_id emoji", order(q("bi-\U0001F600"), okEmail, okItems), 422, "customer_id"),
		post("customer_id combining mark", order(q("bi-cue\u0301st"), okEmail, okItems), 422, "customer_id"),
		post("customer_id NUL", order(q("bi-\x00cust"), okEmail, okItems), 422, "customer_id"),
		post("customer_id 65 characters", order(q(strings.Repeat("c", 65)), okEmail, okItems), 422, "customer_id"),
		post("customer_id path traversal", order(q("../../etc/passwd"), okEmail, okItems), 422, "customer_id"),
		post("customer_id SQL", order(q("x'; DROP TABLE orders;--"), okEmail, okItems), 422, "customer_id"),
		post("sku invalid UTF-8", order(okCustomer, okEmail, "[{\"sku\":\"bi-\xff\xfe\",\"quantity\":1}]"), 422, "items[0].sku"),
		post("sku empty", order(okCustomer, okEmail, `[{"sku":"","quantity":1}]`), 422, "items[0].sku"),
		post("sku twice", order(okCustomer, okEmail, `[{"sku":"bi-mug","quantity":1},{"sku":"bi-mug","quantity":2}]`), 422, "items[1].sku"),
		post("sku unknown", order(okCustomer, okEmail, `[{"sku":"bi-nothing","quantity":1}]`), 422, "items[0].sku"),
		post("total over the limit", order(okCustomer, okEmail, `[{"sku":"bi-gold","quantity":2}]`), 422, "items"),
		post("Content-Type text/plain", order(okCustomer, okEmail, okItems), 415, "", "Content-Type", "text/plain"),
		post("Content-Type malformed", order(okCustomer, okEmail, okItems), 415, "", "Content-Type", "application/json;;=x"),
		post("Content-Type application/xml", `<order/>`, 415, "", "Content-Type", "application/xml"),
		post("Content-Type form", `customer_id=bi-cust`, 415, "", "Content-Type", "application/x-www-form-urlencoded"),
		{name: "POST /orders: no Content-Type, unknown field", service: "order", method: http.MethodPost, path: "/orders",
			body: `{"nothing":1}`, noCT: true, status: 400},
		post("Idempotency-Key empty", order(okCustomer, okEmail, okItems), 400, "", "Idempotency-Key", ""),
		post("Idempotency-Key 256 characters", order(okCustomer, okEmail, okItems), 400, "", "Idempotency-Key", strings.Repeat("k", 256)),
		post("Idempotency-Key with a space", order(okCustomer, okEmail, okItems), 400, "", "Idempotency-Key", "bi key"),
		post("Idempotency-Key not ASCII", order(okCustomer, okEmail, okItems), 400, "", "Idempotency-Key", "bi-ключ"),
		post("Idempotency-Key twice", order(okCustomer, okEmail, okItems), 400, "", "Idempotency-Key", "bi-a", "Idempotency-Key", "bi-b"),
		post("Idempotency-Key reused for another order", order(okCustomer, okEmail, line("2")), 422, "", "Idempotency-Key", fx.orderKey),
		post("body over the limit", `{"customer_id":"bi-cust"`+big+`}`, 413, ""),
		{name: "POST /orders: chunked body over the limit", service: "order", method: http.MethodPost, path: "/orders",
			body: `{"customer_id":"bi-cust"` + big + `}`, chunked: true, status: 413},
		{name: "POST /orders: Content-Length over the limit, no body sent", service: "order", status: 413,
			raw: "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"},
		{name: "POST /orders: Content-Length over the limit, Expect: 100-continue", service: "order", status: 413,
			raw: "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n"},
		{name: "POST /orders: invalid traceparent", service: "order", method: http.MethodPost, path: "/orders",
			body: order(okCustomer, okEmail, line("0")), header: []string{"traceparent", "00-zz-yy-01"}, status: 422, field: "items[0].quantity"},

		// Order ids and methods.
		method("order", http.MethodGet, "/orders"),
		method("order", http.MethodPut, "/orders"),
		method("order", http.MethodPatch, "/orders"),
		method("order", http.MethodDelete, "/orders"),
		method("order", http.MethodTrace, "/orders"),
		method("order", http.MethodPatch, "/orders/"+fx.orderID),
		method("order", http.MethodDelete, "/orders/"+fx.orderID),
		method("order", http.MethodPost, "/orders/"+fx.orderID),
		method("order", http.MethodTrace, "/orders/"+fx.orderID),
		get("order", "/orders/not-a-uuid", 404, ""),
		get("order", "/orders/"+strings.ReplaceAll(uuidNew, "-", ""), 404, ""),
		get("order", "/orders/{"+uuidNew+"}", 404, ""),
		get("order", "/orders/urn:uuid:"+uuidNew, 404, ""),
		get("order", "/orders/"+uuidNew+"0", 404, ""),
		get("order", "/orders/"+strings.Repeat("f", 4000), 404, ""),
		get("order", "/orders/..%2F..%2Flivez", 404, ""),
		get("order", "/orders/%00", 404, ""),
		get("order", "/orders/%E2%80%AE"+uuidNew[1:], 404, ""),
		get("order", "/orders/"+uuidNew, 404, ""),
		get("order", "/orders/", 404, ""),
		get("order", "/nothing", 404, ""),

		// Deposits and accounts.
		deposit("truncated JSON", `{"amount_cents":`, 400, ""),
		deposit("empty body", ``, 400, ""),
		deposit("no amount", `{}`, 422, "amount_cents"),
		deposit("amount null", `{"amount_cents":null}`, 422, "amount_cents"),
		deposit("amount 0", `{"amount_cents":0}`, 422, "amount_cents"),
		deposit("amount -1", `{"amount_cents":-1}`, 422, "amount_cents"),
		deposit("amount max+1", `{"amount_cents":100000001}`, 422, "amount_cents"),
		deposit("amount past int64", `{"amount_cents":9223372036854775808}`, 400, "amount_cents"),
		deposit("amount -int64 min-1", `{"amount_cents":-9223372036854775809}`, 400, "amount_cents"),
		deposit("amount a fraction", `{"amount_cents":1.5}`, 400, "amount_cents"),
		deposit("amount a string", `{"amount_cents":"100"}`, 400, "amount_cents"),
		deposit("amount a boolean", `{"amount_cents":true}`, 400, "amount_cents"),
		deposit("unknown field", `{"amount_cents":100,"currency":"EUR"}`, 400, ""),
		deposit("Content-Type text/plain", `{"amount_cents":100}`, 415, "", "Content-Type", "text/plain"),
		deposit("Idempotency-Key 256 characters", `{"amount_cents":100}`, 400, "", "Idempotency-Key", strings.Repeat("k", 256)),
		deposit("Idempotency-Key twice", `{"amount_cents":100}`, 400, "", "Idempotency-Key", "bi-a", "Idempotency-Key", "bi-b"),
		deposit("Idempotency-Key reused for another amount", `{"amount_cents":100}`, 422, "", "Idempotency-Key", fx.depositKey),
		deposit("body over the limit", `{"amount_cents":100`+big+`}`, 413, ""),
		{name: "POST deposits: customer id with a space", service: "payment", method: http.MethodPost, path: "/accounts/bi%20cust/deposits",
			body: `{"amount_cents":100}`, status: 400},
		{name: "POST deposits: customer id 65 characters", service: "payment", method: http.MethodPost, path: "/accounts/" + strings.Repeat("c", 65) + "/deposits",
			body: `{"amount_cents":100}`, status: 400},
		{name: "POST deposits: customer id right-to-left", service: "payment", method: http.MethodPost, path: "/accounts/%E2%80%AEbi/deposits",
			body: `{"amount_cents":100}`, status: 400},
		{name: "POST deposits: customer id encoded slash", service: "payment", method: http.MethodPost, path: "/accounts/..%2Fbi/deposits",
			body: `{"amount_cents":100}`, status: 400},
		get("payment", "/accounts/bi-nobody", 404, ""),
		get("payment", "/accounts/.hidden", 404, ""),
		get("payment", "/accounts/"+strings.Repeat("c", 65), 404, ""),
		get("payment", "/payments/not-a-uuid", 404, ""),
		get("payment", "/payments/"+uuidNew, 404, ""),
		method("payment", http.MethodDelete, "/accounts/"+fx.customer),
		method("payment", http.MethodPatch, "/accounts/"+fx.customer),
		method("payment", http.MethodGet, "/accounts/"+fx.customer+"/deposits"),
		method("payment", http.MethodPut, "/accounts/"+fx.customer+"/deposits"),
		method("payment", http.MethodPost, "/payments/"+fx.orderID),
		method("payment", http.MethodTrace, "/payments/"+fx.orderID),

		// Products and restocks.
		put("truncated JSON", "bi-new", `{"name":"x",`, 400, ""),
		put("empty body", "bi-new", ``, 400, ""),
		put("no fields", "bi-new", `{}`, 422, "name"),
		put("no available for a new product", "bi-new", `{"name":"New","price_cents":100}`, 422, "available"),
		put("price -1", "bi-new", `{"name":"New","price_cents":-1,"available":1}`, 422, "price_cents"),
		put("price max+1", "bi-new", `{"name":"New","price_cents":100000001,"available":1}`, 422, "price_cents"),
		put("price past int64", "bi-new", `{"name":"New","price_cents":9223372036854775808,"available":1}`, 400, "price_cents"),
		put("price a fraction", "bi-new", `{"name":"New","price_cents":9.99,"available":1}`, 400, "price_cents"),
		put("price a string", "bi-new", `{"name":"New","price_cents":"100","available":1}`, 400, "price_cents"),
		put("available -1", "bi-new", `{"name":"New","price_cents":100,"available":-1}`, 422, "available"),
		put("available max+1", "bi-new", `{"name":"New","price_cents":100,"available":1000001}`, 422, "available"),
		put("name empty", "bi-new", `{"name":"","price_cents":100,"available":1}`, 422, "name"),
		put("name blank", "bi-new", `{"name":" \t\n ","price_cents":100,"available":1}`, 422, "name"),
		put("name 201 characters", "bi-new", `{"name":"`+strings.Repeat("n", 201)+`","price_cents":100,"available":1}`, 422, "name"),
		put("name 201 combining marks", "bi-new", `{"name":"e`+strings.Repeat("\u0301", 200)+`","price_cents":100,"available":1}`, 422, "name"),
		put("name 201 emoji", "bi-new", `{"name":"`+strings.Repeat("\U0001F600", 201)+`","price_cents":100,"available":1}`, 422, "name"),
		put("name with NUL", "bi-new", `{"name":"Mug\u0000","price_cents":100,"available":1}`, 422, "name"),
		put("name a number", "bi-new", `{"name":42,"price_cents":100,"available":1}`, 400, "name"),
		put("unknown field", "bi-new", `{"name":"New","price_cents":100,"available":1,"reserved":0}`, 400, ""),
		put("sku with a space", "bi%20new", `{"name":"New","price_cents":100,"available":1}`, 400, ""),
		put("sku encoded path traversal", "%2E%2E%2Fetc", `{"name":"New","price_cents":100,"available":1}`, 400, ""),
		put("sku 65 characters", strings.Repeat("s", 65), `{"name":"New","price_cents":100,"available":1}`, 400, ""),
		put("sku emoji", "%F0%9F%98%80", `{"name":"New","price_cents":100,"available":1}`, 400, ""),
		put("stock changed without If-Match", fx.sku, `{"name":"Mug","price_cents":500,"available":5}`, 428, ""),
		put("If-Match an old version", fx.sku, `{"name":"Mug","price_cents":500,"available":5}`, 412, "", "If-Match", `"0"`),
		put("If-Match weak", fx.sku, `{"name":"Mug","price_cents":500,"available":5}`, 412, "", "If-Match", `W/"1"`),
		put("If-Match garbage", fx.sku, `{"name":"Mug","price_cents":500,"available":5}`, 412, "", "If-Match", `"\u00ff`),
		put("If-Match for a product that does not exist", "bi-new", `{"name":"New","price_cents":100,"available":1}`, 412, "", "If-Match", `"1"`),
		put("Content-Type text/plain", "bi-new", `{"name":"New","price_cents":100,"available":1}`, 415, "", "Content-Type", "text/plain"),
		{name: "PUT /products: chunked body over the limit", service: "inventory", method: http.MethodPut, path: "/products/bi-new",
			body: `{"name":"` + big + `"}`, chunked: true, status: 413},
		restock("quantity 0", fx.sku, `{"quantity":0}`, 422, "quantity"),
		restock("quantity -1", fx.sku, `{"quantity":-1}`, 422, "quantity"),
		restock("quantity max+1", fx.sku, `{"quantity":1000001}`, 422, "quantity"),
		restock("quantity past int", fx.sku, `{"quantity":9223372036854775808}`, 400, "quantity"),
		restock("quantity a string", fx.sku, `{"quantity":"1"}`, 400, "quantity"),
		restock("no quantity", fx.sku, `{}`, 422, "quantity"),
		restock("past the most stock", fx.fullSKU, `{"quantity":1}`, 422, "quantity"),
		restock("product that does not exist", "bi-nothing", `{"quantity":1}`, 404, ""),
		restock("If-Match an old version", fx.sku, `{"quantity":1}`, 412, "", "If-Match", `"0"`),
		restock("sku invalid", "bi%00", `{"quantity":1}`, 400, ""),
		restock("not JSON", fx.sku, `quantity=1`, 400, ""),
		get("inventory", "/products/bi%20mug", 404, ""),
		get("inventory", "/products/bi-nothing", 404, ""),
		get("inventory", "/products/"+strings.Repeat("s", 65), 404, ""),
		method("inventory", http.MethodDelete, "/products/"+fx.sku),
		method("inventory", http.MethodPatch, "/products/"+fx.sku),
		method("inventory", http.MethodPost, "/products/"+fx.sku),
		method("inventory", http.MethodTrace, "/products/"+fx.sku),
		method("inventory", http.MethodGet, "/products/"+fx.sku+"/restock"),
		method("inventory", http.MethodPut, "/products/"+fx.sku+"/restock"),

		// Shipments.
		get("shipping", "/shipments/not-a-uuid", 404, ""),
		get("shipping", "/shipments/"+uuidNew, 404, ""),
		get("shipping", "/shipments/"+strings.ToUpper(uuidNew)+"x", 404, ""),
		method("shipping", http.MethodPost, "/shipments/"+fx.orderID),
		method("shipping", http.MethodDelete, "/shipments/"+fx.orderID),
		method("shipping", http.MethodPatch, "/shipments/"+fx.orderID),

		// Emails.
		get("email", "/emails", 400, "order_id"),
		get("email", "/emails?order_id=", 400, "order_id"),
		get("email", "/emails?order_id=not-a-uuid", 400, "order_id"),
		get("email", "/emails?order_id="+fx.orderID+"&order_id="+uuidNew, 400, "order_id"),
		get("email", "/emails?order_id=%ZZ", 400, "order_id"),
		get("email", "/emails?order_id=%27%20OR%201%3D1", 400, "order_id"),
		get("email", "/emails/"+fx.orderID, 404, ""),
		method("email", http.MethodPost, "/emails"),
		method("email", http.MethodDelete, "/emails"),

		// Health, metrics and the outbox's admin endpoints.
		method("shipping", http.MethodPost, "/livez"),
		method("email", http.MethodDelete, "/readyz"),
		method("payment", http.MethodPost, "/metrics"),
		method("inventory", http.MethodPatch, "/livez"),
		{name: "GET dead letters: limit 0", service: "order", method: http.MethodGet, path: "/admin/outbox/dead-letters?limit=0", status: 422, field: "limit"},
		{name: "GET dead letters: limit max+1", service: "payment", method: http.MethodGet, path: "/admin/outbox/dead-letters?limit=1001", status: 422, field: "limit"},
		{name: "GET dead letters: limit -1", service: "inventory", method: http.MethodGet, path: "/admin/outbox/dead-letters?limit=-1", status: 422, field: "limit"},
		{name: "GET dead letters: limit not a number", service: "shipping", method: http.MethodGet, path: "/admin/outbox/dead-letters?limit=ten", status: 422, field: "limit"},
		{name: "GET dead letters: limit past int64", service: "email", method: http.MethodGet, path: "/admin/outbox/dead-letters?limit=99999999999999999999", status: 422, field: "limit"},
		{name: "POST requeue: id not a number", service: "order", method: http.MethodPost, path: "/admin/outbox/dead-letters/abc/requeue", status: 404},
		{name: "POST requeue: id 0", service: "order", method: http.MethodPost, path: "/admin/outbox/dead-letters/0/requeue", status: 404},
		{name: "POST requeue: id -1", service: "payment", method: http.MethodPost, path: "/admin/outbox/dead-letters/-1/requeue", status: 404},
		{name: "POST requeue: id past int64", service: "inventory", method: http.MethodPost, path: "/admin/outbox/dead-letters/99999999999999999999/requeue", status: 404},
		{name: "POST requeue: no such dead letter", service: "shipping", method: http.MethodPost, path: "/admin/outbox/dead-letters/12345/requeue", status: 404},
		method("order", http.MethodDelete, "/admin/outbox/dead-letters"),
		method("order", http.MethodGet, "/admin/outbox/dead-letters/1/requeue"),

		// Headers and the request itself.
		// MaxHeaderBytes is 64 KiB, and net/http reads a few KiB past it
		// (more on a kept-alive connection): 128 KiB is over in every case.
		{name: "GET /orders/{id}: header block over the limit", service: "order", method: http.MethodGet, path: "/orders/" + fx.orderID,
			header: []string{"X-Filler", strings.Repeat("x", 128<<10)}, status: 431, plain: true},
		{name: "GET /orders/{id}: many headers over the limit", service: "order", method: http.MethodGet, path: "/orders/" + fx.orderID,
			header: manyHeaders(3000), status: 431, plain: true},
		{name: "POST /orders: Content-Length twice, different", service: "order", status: 400, plain: true,
			raw: "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"},
		{name: "POST /orders: header name with a space", service: "order", status: 400, plain: true,
			raw: "POST /orders HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\nContent-Length: 2\r\n\r\n{}"},
		{name: "GET: no Host", service: "order", status: 400, plain: true,
			raw: "GET /livez HTTP/1.1\r\n\r\n"},
		{name: "GET: request line garbage", service: "payment", status: 400, plain: true,
			raw: "\x00\x01\x02 / HTTP/1.1\r\nHost: x\r\n\r\n"},
	}

	byStatus := map[int]int{}
	fivexx := 0
	for _, c := range cases {
		status, header, body, err := s.send(c)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		byStatus[status]++
		if status >= 500 {
			fivexx++
		}
		if status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, status, c.status, truncate(body, 300))
			continue
		}
		if c.plain {
			continue
		}
		if ctype := header.Get("Content-Type"); ctype != "application/problem+json" {
			t.Errorf("%s: Content-Type %q, want application/problem+json", c.name, ctype)
			continue
		}
		if status == http.StatusMethodNotAllowed && header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", c.name)
		}
		var p problem
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Errorf("%s: problem %q: %v", c.name, truncate(body, 300), err)
			continue
		}
		switch {
		case p.Status != c.status || p.Title == "":
			t.Errorf("%s: problem %+v", c.name, p)
		case p.Detail == "":
			t.Errorf("%s: problem without a detail: %+v", c.name, p)
		case c.field != "" && p.Errors[c.field] == "":
			t.Errorf("%s: problem does not name field %s: %+v", c.name, c.field, p)
		}
	}
	var counts []string
	for _, code := range slices.Sorted(maps.Keys(byStatus)) {
		counts = append(counts, fmt.Sprintf("%d: %d", code, byStatus[code]))
	}
	t.Logf("%d malformed requests, by status: %s; 5xx: %d", len(cases), strings.Join(counts, ", "), fivexx)
	if len(cases) < 100 {
		t.Errorf("%d requests in the matrix, want at least 100", len(cases))
	}
}

func mapsKeys[K comparable, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// manyHeaders returns n distinct headers of 40 bytes each, as name, value
// pairs.
func manyHeaders(n int) []string {
	hs := make([]string, 0, 2*n)
	for i := range n {
		hs = append(hs, fmt.Sprintf("X-Filler-%05d", i), strings.Repeat("v", 24))
	}
	return hs
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// send sends c and returns the response's status, header and body.
func (s *stack) send(c badRequest) (status int, header http.Header, body string, err error) {
	addr := s.proc(c.service).addr
	var resp *http.Response
	if c.raw != "" {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, nil, "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, c.raw); err != nil {
			return 0, nil, "", err
		}
		resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, nil, "", fmt.Errorf("read response: %w", err)
		}
	} else {
		var r io.Reader
		if c.body != "" {
			r = strings.NewReader(c.body)
			if c.chunked {
				r = struct{ io.Reader }{r} // hides the length: sent chunked
			}
		}
		req, err := http.NewRequest(c.method, "http://"+addr+c.path, r)
		if err != nil {
			return 0, nil, "", err
		}
		if c.body != "" && !c.noCT {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(c.header); i += 2 {
			if i == 0 || c.header[i] != c.header[i-2] {
				req.Header.Del(c.header[i])
			}
			req.Header.Add(c.header[i], c.header[i+1])
		}
		resp, err = s.client.Do(req)
		if err != nil {
			return 0, nil, "", err
		}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, "", fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, resp.Header, string(b), nil
}

// The consumer groups (one per service), the topics each reads, and the
// event types each handles: the outcome of a message for a group follows
// from them (see badMessage). Written out here rather than read from the
// services, so that a change to either shows up as a failure.
var (
	topicReaders = map[string][]string{
		events.TopicOrders:    {"payment", "inventory", "shipping", "email"},
		events.TopicPayments:  {"order", "inventory"},
		events.TopicInventory: {"order", "payment", "shipping"},
		events.TopicShipping:  {"order", "inventory", "email"},
	}
	groupHandles = map[string][]string{
		"order": {events.TypeProductUpdated, events.TypePaymentProcessed, events.TypeInventoryReserved, events.TypeOrderShipped,
			events.TypePaymentFailed, events.TypePaymentRefunded, events.TypeShipmentCancelled},
		"payment":   {events.TypeOrderCreated, events.TypeInventoryUnavailable, events.TypeOrderCancelled},
		"inventory": {events.TypePaymentProcessed, events.TypeOrderShipped, events.TypeOrderCancelled},
		"shipping":  {events.TypeInventoryReserved, events.TypeOrderExpired, events.TypeOrderCancelled},
		"email":     {events.TypeOrderCreated, events.TypeOrderShipped, events.TypeOrderCancelled},
	}
)

const outcomeSkipped = "skipped"

// badMessage is one row of the Kafka matrix: a message produced onto topic.
// Its outcome for each group reading the topic: dead-lettered with reason
// decode by every one when its envelope cannot be read (decode), else
// skipped by a group that does not handle its type, else dead-lettered with
// reason by a group that does.
type badMessage struct {
	name   string
	topic  string
	msg    kafka.Message
	decode bool
	reason string // decode false: the reason of every group that handles the type
}

// caseHeader names the matrix row on every message, so that its dead
// letters (which keep the original headers) are told apart.
const caseHeader = "badinput.case"

func (m badMessage) eventType() string { return events.Header(m.msg, events.HeaderType) }

// expected returns the outcome for every group reading the message's topic.
func (m badMessage) expected() map[string]string {
	out := map[string]string{}
	for _, g := range topicReaders[m.topic] {
		switch {
		case m.decode:
			out[g] = "decode"
		case !slices.Contains(groupHandles[g], m.eventType()):
			out[g] = outcomeSkipped
		default:
			out[g] = m.reason
		}
	}
	return out
}

// badMessages runs the Kafka matrix and returns how many dead letters there
// are once it is done.
func (s *stack) badMessages(fx badInputFixture) int {
	t := s.t
	missing := uuid.NewString() // an order that does not exist
	event := func(source string, p events.Payload) kafka.Message {
		e, err := events.New(source, p)
		if err != nil {
			t.Fatal(err)
		}
		route, ok := events.RouteOf(e.Type)
		if !ok {
			t.Fatalf("no route for %s", e.Type)
		}
		return events.ToMessage(route.Topic, e)
	}
	cancelled := func() kafka.Message {
		return event(events.SourceOrder, events.OrderCancelled{OrderID: missing, CustomerID: fx.customer, Reason: "payment_failed"})
	}
	created := func() kafka.Message {
		return event(events.SourceOrder, events.OrderCreated{OrderID: missing, CustomerID: fx.customer, Email: "bi@example.com", Currency: "USD",
			Items: []events.Item{{SKU: fx.sku, Quantity: 1, UnitPriceCents: 500}}, TotalCents: 500})
	}
	paymentFailed := func() kafka.Message {
		return event(events.SourcePayment, events.PaymentFailed{OrderID: missing, CustomerID: fx.customer, AmountCents: 500, Reason: "insufficient_funds"})
	}
	with := func(m kafka.Message, kv ...string) kafka.Message {
		for i := 0; i+1 < len(kv); i += 2 {
			m = setHeader(m, kv[i], kv[i+1])
		}
		return m
	}
	without := func(m kafka.Message, keys ...string) kafka.Message {
		var hs []kafka.Header
		for _, h := range m.Headers {
			if !slices.Contains(keys, h.Key) {
				hs = append(hs, h)
			}
		}
		m.Headers = hs
		return m
	}
	value := func(m kafka.Message, v string) kafka.Message { m.Value = []byte(v); return m }
	onTopic := func(m kafka.Message, topic string) kafka.Message { m.Topic = topic; return m }
	orders, payments, inventory, shipping := events.TopicOrders, events.TopicPayments, events.TopicInventory, events.TopicShipping
	huge := strings.Repeat("x", 900<<10) // under the broker's 1 MiB, huge for any field

	cases := []badMessage{
		// Envelopes that cannot be read: every reader dead-letters them.
		{name: "no ce_specversion", msg: without(cancelled(), events.HeaderSpecVersion), decode: true},
		{name: "no ce_id", msg: without(cancelled(), events.HeaderID), decode: true},
		{name: "no ce_type", msg: without(cancelled(), events.HeaderType), decode: true},
		{name: "no ce_source", msg: without(cancelled(), events.HeaderSource), decode: true},
		{name: "no ce_subject and no key", msg: func() kafka.Message { m := without(cancelled(), events.HeaderSubject); m.Key = nil; return m }(), decode: true},
		{name: "key is not the subject", msg: func() kafka.Message {
			m := cancelled()
			m.Key = []byte("0193a5c0-0000-7000-8000-0000000000aa")
			return m
		}(), decode: true},
		{name: "ProductUpdated keyed by another SKU",
			msg: func() kafka.Message {
				m := event(events.SourceInventory, events.ProductUpdated{SKU: "bi-probe", Name: "Probe", PriceCents: 1})
				m.Key = []byte("bi-other")
				return m
			}(), decode: true},
		{name: "no headers at all, garbage", msg: kafka.Message{Topic: orders, Value: []byte("\x00\xffgarbage")}, decode: true},
		{name: "ce_specversion 0.3", msg: with(cancelled(), events.HeaderSpecVersion, "0.3"), decode: true},
		{name: "ce_id not a UUID", msg: with(cancelled(), events.HeaderID, "not-a-uuid"), decode: true},
		{name: "ce_time not RFC 3339", msg: with(cancelled(), events.HeaderTime, "yesterday"), decode: true},
		{name: "content-type text/plain", msg: with(cancelled(), events.HeaderContentType, "text/plain"), decode: true},
		{name: "content-type application/xml", msg: with(cancelled(), events.HeaderContentType, "application/xml"), decode: true},
		{name: "content-type structured CloudEvents", msg: with(cancelled(), events.HeaderContentType, "application/cloudevents+json"), decode: true},
		{name: "schema version 0", msg: with(cancelled(), events.HeaderSchemaVersion, "0"), decode: true},
		{name: "schema version -1", msg: with(cancelled(), events.HeaderSchemaVersion, "-1"), decode: true},
		{name: "schema version not a number", msg: with(cancelled(), events.HeaderSchemaVersion, "two"), decode: true},
		{name: "schema version a fraction", msg: with(cancelled(), events.HeaderSchemaVersion, "1.5"), decode: true},
		{name: "schema version past int64", msg: with(cancelled(), events.HeaderSchemaVersion, "99999999999999999999"), decode: true},
		{name: "PaymentFailed without ce_id", msg: without(paymentFailed(), events.HeaderID), decode: true},
		{name: "PaymentFailed content-type text/plain", msg: with(paymentFailed(), events.HeaderContentType, "text/plain"), decode: true},
		{name: "ProductUpdated schema version 0",
			msg: with(event(events.SourceInventory, events.ProductUpdated{SKU: "bi-ghost", Name: "Ghost", PriceCents: 1}), events.HeaderSchemaVersion, "0"), decode: true},
		{name: "OrderShipped without ce_source",
			msg: without(event(events.SourceShipping, events.OrderShipped{OrderID: missing, TrackingNumber: "T"}), events.HeaderSource), decode: true},

		// Data that cannot be read: dead-lettered by the handlers.
		{name: "OrderCancelled garbage", msg: value(cancelled(), "\x00\xffgarbage"), reason: "handler"},
		{name: "OrderCancelled truncated JSON", msg: value(cancelled(), `{"order_id":"`), reason: "handler"},
		{name: "OrderCancelled a JSON array", msg: value(cancelled(), `[1,2]`), reason: "handler"},
		{name: "OrderCancelled an empty object", msg: value(cancelled(), `{}`), reason: "handler"},
		{name: "OrderCancelled empty value", msg: value(cancelled(), ``), reason: "handler"},
		{name: "OrderCancelled order_id a number", msg: value(cancelled(), `{"order_id":42,"reason":"x"}`), reason: "handler"},
		{name: "OrderCancelled order_id not a UUID", msg: value(cancelled(), `{"order_id":"../etc","reason":"x"}`), reason: "handler"},
		{name: "OrderCancelled order_id without dashes", msg: value(cancelled(), `{"order_id":"`+strings.ReplaceAll(missing, "-", "")+`"}`), reason: "handler"},
		{name: "OrderCancelled oversized order_id", msg: value(cancelled(), `{"order_id":"`+huge+`"}`), reason: "handler"},
		{name: "OrderCreated items a string", msg: value(created(), `{"order_id":"`+missing+`","items":"mug"}`), reason: "handler"},
		{name: "OrderCreated total a string", msg: value(created(), `{"order_id":"`+missing+`","total_cents":"500"}`), reason: "handler"},
		{name: "PaymentFailed order_id not a UUID", msg: value(paymentFailed(), `{"order_id":"x","amount_cents":1}`), reason: "handler"},
		{name: "PaymentProcessed amount a string",
			msg: value(event(events.SourcePayment, events.PaymentProcessed{OrderID: missing}), `{"order_id":"`+missing+`","amount_cents":"1"}`), reason: "handler"},
		{name: "InventoryReserved garbage", msg: value(event(events.SourceInventory, events.InventoryReserved{OrderID: missing}), "garbage"), reason: "handler"},
		{name: "InventoryReserved oversized garbage",
			msg: value(event(events.SourceInventory, events.InventoryReserved{OrderID: missing}), "\xff"+huge), reason: "handler"},
		{name: "ProductUpdated price a string",
			msg: value(event(events.SourceInventory, events.ProductUpdated{SKU: "bi-ghost"}), `{"sku":"bi-ghost","name":"G","price_cents":"1"}`), reason: "handler"},
		{name: "ProductUpdated sku not an id", msg: event(events.SourceInventory, events.ProductUpdated{SKU: "bi ghost/..", Name: "G", PriceCents: 1}), reason: "handler"},
		{name: "ProductUpdated price negative", msg: event(events.SourceInventory, events.ProductUpdated{SKU: "bi-ghost", Name: "G", PriceCents: -5}), reason: "handler"},
		{name: "ProductUpdated price over the limit",
			msg: event(events.SourceInventory, events.ProductUpdated{SKU: "bi-ghost", Name: "G", PriceCents: 100_000_001}), reason: "handler"},
		{name: "OrderShipped truncated JSON", msg: value(event(events.SourceShipping, events.OrderShipped{OrderID: missing}), `{"order_id":`), reason: "handler"},

		// Newer schema versions: retried for the wait, then dead-lettered.
		{name: "OrderCancelled v2", msg: with(cancelled(), events.HeaderSchemaVersion, "2"), reason: "unknown_version"},
		{name: "OrderCreated v3", msg: with(created(), events.HeaderSchemaVersion, "3"), reason: "unknown_version"},
		{name: "PaymentFailed v99", msg: with(paymentFailed(), events.HeaderSchemaVersion, "99"), reason: "unknown_version"},
		{name: "ShipmentCancelled v2",
			msg: with(event(events.SourceShipping, events.ShipmentCancelled{OrderID: missing, Reason: "timed_out"}), events.HeaderSchemaVersion, "2"), reason: "unknown_version"},

		// Off their route: the wrong topic, or a source that does not
		// produce the type.
		{name: "OrderCancelled on payments.events", msg: onTopic(cancelled(), payments), reason: "unexpected_source"},
		{name: "PaymentProcessed on shipping.events",
			msg: onTopic(event(events.SourcePayment, events.PaymentProcessed{OrderID: missing, CustomerID: fx.customer, AmountCents: 500,
				Items: []events.Item{{SKU: fx.sku, Quantity: 1, UnitPriceCents: 500}}}), shipping), reason: "unexpected_source"},
		{name: "InventoryReserved on orders.events",
			msg:    onTopic(event(events.SourceInventory, events.InventoryReserved{OrderID: missing, Items: []events.Item{{SKU: fx.sku, Quantity: 1}}}), orders),
			reason: "unexpected_source"},
		{name: "OrderShipped on inventory.events",
			msg: onTopic(event(events.SourceShipping, events.OrderShipped{OrderID: missing, TrackingNumber: "T"}), inventory), reason: "unexpected_source"},
		{name: "OrderCreated from payment", msg: with(created(), events.HeaderSource, events.SourcePayment), reason: "unexpected_source"},
		{name: "OrderCancelled from a stranger", msg: with(cancelled(), events.HeaderSource, "evil"), reason: "unexpected_source"},
		{name: "ProductUpdated from order",
			msg:    with(event(events.SourceInventory, events.ProductUpdated{SKU: "bi-ghost", Name: "G", PriceCents: 1}), events.HeaderSource, events.SourceOrder),
			reason: "unexpected_source"},
		{name: "PaymentFailed from inventory", msg: with(paymentFailed(), events.HeaderSource, events.SourceInventory), reason: "unexpected_source"},

		// Well-formed events for an order that does not exist.
		{name: "PaymentFailed for no order", msg: paymentFailed(), reason: "handler"},
		{name: "PaymentRefunded for no order",
			msg: event(events.SourcePayment, events.PaymentRefunded{OrderID: missing, CustomerID: fx.customer, AmountCents: 500, Reason: "out_of_stock"}), reason: "handler"},
		{name: "ShipmentCancelled for no order", msg: event(events.SourceShipping, events.ShipmentCancelled{OrderID: missing, Reason: "timed_out"}), reason: "handler"},

		// Types nobody handles: skipped (tolerant reader), whatever the data.
		{name: "unknown type on orders.events", msg: with(cancelled(), events.HeaderType, "BogusHappened")},
		{name: "unknown type, garbage data", msg: value(with(paymentFailed(), events.HeaderType, "BogusHappened"), "\x00garbage")},
		{name: "unknown type, lower case of a known one", msg: with(cancelled(), events.HeaderType, "ordercancelled")},
		{name: "unknown type on inventory.events",
			msg: with(event(events.SourceInventory, events.InventoryReserved{OrderID: missing}), events.HeaderType, "InventoryCounted")},
		{name: "unknown type on shipping.events, newer version",
			msg: with(event(events.SourceShipping, events.OrderShipped{OrderID: missing}), events.HeaderType, "ParcelLost", events.HeaderSchemaVersion, "7")},
	}

	// Expectations, and the counters before.
	wantLetters := map[string]string{} // group + "/" + case -> reason
	wantDead := map[[2]string]float64{}
	wantSkipped := map[[2]string]float64{}
	for i := range cases {
		c := &cases[i]
		c.topic = c.msg.Topic
		if len(topicReaders[c.topic]) == 0 {
			t.Fatalf("%s: topic %q has no readers", c.name, c.topic)
		}
		c.msg = setHeader(c.msg, caseHeader, c.name)
		for g, outcome := range c.expected() {
			if outcome == outcomeSkipped {
				wantSkipped[[2]string{g, c.eventType()}]++
				continue
			}
			if outcome == "" {
				t.Fatalf("%s: no reason given for group %s, which handles %s", c.name, g, c.eventType())
			}
			wantLetters[g+"/"+c.name] = outcome
			wantDead[[2]string{g, outcome}]++
		}
	}
	dead := func(k [2]string) float64 {
		return s.metric(k[0], "consumer_dead_lettered_total", `group="`+k[0]+`"`, `reason="`+k[1]+`"`)
	}
	skipped := func(k [2]string) float64 {
		return s.metric(k[0], "consumer_skipped_total", `group="`+k[0]+`"`, `type="`+k[1]+`"`)
	}
	deadBefore, skippedBefore := map[[2]string]float64{}, map[[2]string]float64{}
	for _, g := range services {
		for _, r := range []string{"decode", "handler", "max_attempts", "unknown_version", "unexpected_source"} {
			deadBefore[[2]string{g, r}] = dead([2]string{g, r})
		}
	}
	for k := range wantSkipped {
		skippedBefore[k] = skipped(k)
	}

	// Produced one at a time, in order (the large ones alone in a batch).
	for _, c := range cases {
		s.produce(c.msg)
	}

	// Every expected letter, and nothing else, in the dead-letter topics.
	var letters []deadletter.Letter
	got := map[string]string{}
	eventually(t, 60*time.Second, fmt.Sprintf("%d dead letters", len(wantLetters)), func() bool {
		letters = s.deadLetters()
		seen := map[string]bool{}
		for _, l := range letters {
			seen[l.Group+"/"+l.Header(caseHeader)] = true
		}
		for k := range wantLetters {
			if !seen[k] {
				return false
			}
		}
		return true
	})
	for _, l := range letters {
		name := l.Header(caseHeader)
		if name == "" {
			t.Errorf("a dead letter from no case of the matrix: group %s, type %s, reason %s: %s", l.Group, l.EventType, l.Reason, l.Error)
			continue
		}
		k := l.Group + "/" + name
		if prev, dup := got[k]; dup {
			t.Errorf("%s dead-lettered twice by %s (%s, then %s)", name, l.Group, prev, l.Reason)
		}
		got[k] = l.Reason
		if l.Error == "" || l.Original == nil || l.Original.Topic == "" {
			t.Errorf("%s: letter of %s without its error or origin: %+v", name, l.Group, l)
		}
	}
	for k, want := range wantLetters {
		if got[k] != want {
			t.Errorf("%s: dead-lettered as %q, want %q", k, got[k], want)
		}
	}
	for k, reason := range got {
		if _, ok := wantLetters[k]; !ok {
			t.Errorf("%s: dead-lettered (%s), want skipped", k, reason)
		}
	}
	for k, before := range deadBefore {
		eventually(t, 10*time.Second, fmt.Sprintf("%s to count %v dead letters (%s)", k[0], wantDead[k], k[1]), func() bool {
			return dead(k)-before >= wantDead[k]
		})
		if n := dead(k) - before; n != wantDead[k] {
			t.Errorf("consumer_dead_lettered_total{group=%q, reason=%q} +%v, want +%v", k[0], k[1], n, wantDead[k])
		}
	}
	for k, want := range wantSkipped {
		eventually(t, 30*time.Second, fmt.Sprintf("%s to skip %v %s", k[0], want, k[1]), func() bool {
			return skipped(k)-skippedBefore[k] >= want
		})
		if n := skipped(k) - skippedBefore[k]; n != want {
			t.Errorf("consumer_skipped_total{group=%q, type=%q} +%v, want +%v", k[0], k[1], n, want)
		}
	}

	byReason := map[string]int{}
	for _, r := range wantLetters {
		byReason[r]++
	}
	var skips float64
	for _, n := range wantSkipped {
		skips += n
	}
	var counts []string
	for _, r := range slices.Sorted(maps.Keys(byReason)) {
		counts = append(counts, fmt.Sprintf("%s %d", r, byReason[r]))
	}
	t.Logf("%d malformed messages: %d dead letters (%s), %v skips", len(cases), len(wantLetters), strings.Join(counts, ", "), skips)
	if len(cases) < 50 {
		t.Errorf("%d messages in the matrix, want at least 50", len(cases))
	}
	return len(letters)
}

// deadLetters lists every consumer group's dead letters.
func (s *stack) deadLetters() []deadletter.Letter {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	letters, err := deadletter.List(ctx, s.infra.Brokers(), deadletter.Filter{})
	if err != nil {
		s.t.Fatalf("list dead letters: %v", err)
	}
	return letters
}

// setHeader sets the message's header key to v, replacing every one of that
// name.
func setHeader(m kafka.Message, key, v string) kafka.Message {
	hs := make([]kafka.Header, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if h.Key != key {
			hs = append(hs, h)
		}
	}
	m.Headers = append(hs, kafka.Header{Key: key, Value: []byte(v)})
	return m
}
