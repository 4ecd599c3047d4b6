package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/web"
)

func TestDepositAndGetAccount(t *testing.T) {
	ts := newTestService(t)

	res := ts.Do(t, http.MethodPost, "/accounts/alice/deposits", "application/json", `{"amount_cents": 10000}`)
	if res.Code != http.StatusCreated {
		t.Fatalf("first deposit: status %d, want 201", res.Code)
	}
	if got := servicetest.DecodeJSON[accountResponse](t, res); got != (accountResponse{CustomerID: "alice", BalanceCents: 10000}) {
		t.Fatalf("first deposit: %+v", got)
	}

	res = ts.Do(t, http.MethodPost, "/accounts/alice/deposits", "", `{"amount_cents": 2500}`)
	if res.Code != http.StatusCreated {
		t.Fatalf("second deposit (no content type): status %d, want 201", res.Code)
	}
	if got := servicetest.DecodeJSON[accountResponse](t, res); got.BalanceCents != 12500 {
		t.Fatalf("second deposit: balance %d, want 12500", got.BalanceCents)
	}

	res = ts.Do(t, http.MethodGet, "/accounts/alice", "", "")
	if res.Code != http.StatusOK {
		t.Fatalf("get account: status %d", res.Code)
	}
	if got := servicetest.DecodeJSON[accountResponse](t, res); got != (accountResponse{CustomerID: "alice", BalanceCents: 12500}) {
		t.Fatalf("get account: %+v", got)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM deposits WHERE customer_id = 'alice'`); n != 2 {
		t.Fatalf("%d deposits recorded, want 2", n)
	}
}

func TestDepositRejectsBadInput(t *testing.T) {
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		status      int
		field       string // a field the problem must name, if any
	}{
		{"malformed JSON", "/accounts/bob/deposits", "application/json", `{"amount_cents": `, 400, ""},
		{"not an object", "/accounts/bob/deposits", "application/json", `[1,2]`, 400, ""},
		{"empty body", "/accounts/bob/deposits", "application/json", ``, 400, ""},
		{"unknown field", "/accounts/bob/deposits", "application/json", `{"amount_cents": 100, "bonus": 5}`, 400, ""},
		{"trailing data", "/accounts/bob/deposits", "application/json", `{"amount_cents": 100} {}`, 400, ""},
		{"amount as a string", "/accounts/bob/deposits", "application/json", `{"amount_cents": "100"}`, 400, "amount_cents"},
		{"fractional amount", "/accounts/bob/deposits", "application/json", `{"amount_cents": 1.5}`, 400, "amount_cents"},
		{"amount beyond int64", "/accounts/bob/deposits", "application/json", `{"amount_cents": 99999999999999999999}`, 400, "amount_cents"},
		{"wrong content type", "/accounts/bob/deposits", "text/plain", `{"amount_cents": 100}`, 415, ""},
		{"body too large", "/accounts/bob/deposits", "application/json", `{"amount_cents": 100, "x": "` + strings.Repeat("a", web.MaxBodyBytes) + `"}`, 413, ""},
		{"missing amount", "/accounts/bob/deposits", "application/json", `{}`, 422, "amount_cents"},
		{"null amount", "/accounts/bob/deposits", "application/json", `{"amount_cents": null}`, 422, "amount_cents"},
		{"zero amount", "/accounts/bob/deposits", "application/json", `{"amount_cents": 0}`, 422, "amount_cents"},
		{"negative amount", "/accounts/bob/deposits", "application/json", `{"amount_cents": -100}`, 422, "amount_cents"},
		{"absurd amount", "/accounts/bob/deposits", "application/json", `{"amount_cents": 100000001}`, 422, "amount_cents"},
		{"SQL-looking customer id", "/accounts/bob';DROP%20TABLE%20accounts;--/deposits", "application/json", `{"amount_cents": 100}`, 400, ""},
		{"very long customer id", "/accounts/" + strings.Repeat("b", 65) + "/deposits", "application/json", `{"amount_cents": 100}`, 400, ""},
		{"customer id with a dot first", "/accounts/.bob/deposits", "application/json", `{"amount_cents": 100}`, 400, ""},
	}
	ts := newTestService(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ts.Do(t, http.MethodPost, tt.path, tt.contentType, tt.body)
			p := servicetest.RequireProblem(t, res, tt.status)
			if tt.field != "" && p.Errors[tt.field] == "" {
				t.Fatalf("problem %+v does not name %s", p, tt.field)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM accounts`); n != 0 {
				t.Fatalf("%d accounts stored", n)
			}
			if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM deposits`); n != 0 {
				t.Fatalf("%d deposits stored", n)
			}
		})
	}
}

func TestGetAccountNotFound(t *testing.T) {
	ts := newTestService(t)
	for _, path := range []string{
		"/accounts/nobody",
		"/accounts/" + strings.Repeat("x", 200),
		"/accounts/x'%20OR%20'1'='1",
	} {
		servicetest.RequireProblem(t, ts.Do(t, http.MethodGet, path, "", ""), http.StatusNotFound)
	}
}

func TestGetPayment(t *testing.T) {
	ts := newTestService(t)
	ts.fund(t, "carol", 5000)
	orderID := uuid.Must(uuid.NewV7()).String()
	e := servicetest.Event(t, "order", events.OrderCreated{OrderID: orderID, CustomerID: "carol", Email: "c@example.com", Currency: "USD",
		Items: []events.Item{{SKU: "MUG", Quantity: 2, UnitPriceCents: 1000}}, TotalCents: 2000})
	if err := ts.Apply(t, e); err != nil {
		t.Fatal(err)
	}

	res := ts.Do(t, http.MethodGet, "/payments/"+orderID, "", "")
	if res.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", res.Code)
	}
	want := paymentResponse{OrderID: orderID, Status: StatusCharged, AmountCents: 2000}
	if got := servicetest.DecodeJSON[paymentResponse](t, res); got != want {
		t.Fatalf("payment %+v, want %+v", got, want)
	}

	// Upper-case spelling of the same UUID finds the same payment.
	res = ts.Do(t, http.MethodGet, "/payments/"+strings.ToUpper(orderID), "", "")
	if res.Code != http.StatusOK {
		t.Fatalf("upper-case id: status %d, want 200", res.Code)
	}

	for _, path := range []string{
		"/payments/" + uuid.Must(uuid.NewV7()).String(),
		"/payments/not-a-uuid",
		"/payments/1;DROP%20TABLE%20payments",
		"/payments/" + strings.Repeat("f", 500),
	} {
		servicetest.RequireProblem(t, ts.Do(t, http.MethodGet, path, "", ""), http.StatusNotFound)
	}
}

func TestMetricsExposed(t *testing.T) {
	ts := newTestService(t)
	ts.fund(t, "dave", 100)
	for _, amount := range []int64{100, 100} { // one charged, one failed
		e := servicetest.Event(t, "order", events.OrderCreated{OrderID: uuid.Must(uuid.NewV7()).String(), CustomerID: "dave", TotalCents: amount})
		if err := ts.Apply(t, e); err != nil {
			t.Fatal(err)
		}
	}
	res := ts.Do(t, http.MethodGet, "/metrics", "", "")
	body := res.Body.Bytes()
	for _, want := range []string{`payments_total{status="CHARGED"} 1`, `payments_total{status="FAILED"} 1`,
		`refunds_total{reason="out_of_stock"} 0`, `refunds_total{reason="timed_out"} 0`, `charges_refused_total 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
