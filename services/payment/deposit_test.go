package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// depositWithKey posts a deposit of amount to customer's account with an
// Idempotency-Key.
func (ts *testService) depositWithKey(t *testing.T, customer, key, amount string) *httptest.ResponseRecorder {
	t.Helper()
	return servicetest.Request(t, ts.Handler, http.MethodPost, "/accounts/"+customer+"/deposits", `{"amount_cents": `+amount+`}`,
		"Content-Type", "application/json", "Idempotency-Key", key)
}

func TestDepositRetriedWithTheSameKeyCreditsOnce(t *testing.T) {
	ts := newTestService(t)

	first := ts.depositWithKey(t, "erin", "dep-1", "1000")
	if first.Code != http.StatusCreated || first.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("first deposit: %d, replayed %q", first.Code, first.Header().Get("Idempotent-Replayed"))
	}
	if got := servicetest.DecodeJSON[accountResponse](t, first); got != (accountResponse{CustomerID: "erin", BalanceCents: 1000}) {
		t.Fatalf("first deposit: %+v", got)
	}

	// A client that timed out sends the same request again.
	for i := 0; i < 2; i++ {
		again := ts.depositWithKey(t, "erin", "dep-1", "1000")
		if again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry %d: %d, replayed %q", i, again.Code, again.Header().Get("Idempotent-Replayed"))
		}
		if got := servicetest.DecodeJSON[accountResponse](t, again); got != (accountResponse{CustomerID: "erin", BalanceCents: 1000}) {
			t.Fatalf("retry %d: %+v, want the first answer", i, got)
		}
	}
	if b := ts.balance(t, "erin"); b != 1000 {
		t.Fatalf("balance %d after a deposit and its retries, want 1000", b)
	}

	// Other deposits (another key, or none) are deposits of their own; a
	// later retry of the first still answers what the first one did.
	if res := ts.depositWithKey(t, "erin", "dep-2", "1000"); res.Code != http.StatusCreated || res.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("deposit with another key: %d", res.Code)
	}
	if res := ts.Do(t, http.MethodPost, "/accounts/erin/deposits", "application/json", `{"amount_cents": 500}`); res.Code != http.StatusCreated {
		t.Fatalf("deposit without a key: %d", res.Code)
	}
	if got := servicetest.DecodeJSON[accountResponse](t, ts.depositWithKey(t, "erin", "dep-1", "1000")); got.BalanceCents != 1000 {
		t.Fatalf("late retry: %+v, want the first answer (1000)", got)
	}
	if b := ts.balance(t, "erin"); b != 2500 {
		t.Fatalf("balance %d, want 2500", b)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM deposits WHERE customer_id = 'erin'`); n != 3 {
		t.Fatalf("%d deposits recorded, want 3", n)
	}
}

func TestDepositKeyReusedForAnotherRequestIsRefused(t *testing.T) {
	ts := newTestService(t)
	if res := ts.depositWithKey(t, "frank", "k", "1000"); res.Code != http.StatusCreated {
		t.Fatalf("first deposit: %d", res.Code)
	}
	tests := []struct {
		name, customer, amount string
	}{
		{"another amount", "frank", "2000"},
		{"another account", "grace", "1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := servicetest.RequireProblem(t, ts.depositWithKey(t, tt.customer, "k", tt.amount), http.StatusUnprocessableEntity)
			if p.Title != "idempotency key reused" {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	if b := ts.balance(t, "frank"); b != 1000 {
		t.Fatalf("balance %d, want 1000", b)
	}
	if n := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM deposits`); n != 1 {
		t.Fatalf("%d deposits recorded, want 1", n)
	}

	// A key that is no acceptable key credits nothing either.
	for _, key := range []string{strings.Repeat("k", 256), "two words", "clé"} {
		servicetest.RequireProblem(t, ts.depositWithKey(t, "frank", key, "1000"), http.StatusBadRequest)
	}
	twice := httptest.NewRequest(http.MethodPost, "/accounts/frank/deposits", strings.NewReader(`{"amount_cents": 1000}`))
	twice.Header.Add("Idempotency-Key", "a")
	twice.Header.Add("Idempotency-Key", "b")
	servicetest.RequireProblem(t, servicetest.Serve(t, ts.Handler, twice), http.StatusBadRequest)
	// An invalid amount is refused before the key is taken: the key stays
	// free for the corrected request.
	servicetest.RequireProblem(t, ts.depositWithKey(t, "frank", "k2", "0"), http.StatusUnprocessableEntity)
	if res := ts.depositWithKey(t, "frank", "k2", "1"); res.Code != http.StatusCreated || res.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("corrected request: %d", res.Code)
	}
	if b := ts.balance(t, "frank"); b != 1001 {
		t.Fatalf("balance %d, want 1001", b)
	}
}

func TestConcurrentDepositsWithOneKeyCreditOnce(t *testing.T) {
	ts := newTestService(t)
	const n = 16
	var wg sync.WaitGroup
	results := make([]*httptest.ResponseRecorder, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = ts.depositWithKey(t, "heidi", "same-key", "700")
		}()
	}
	wg.Wait()
	made := 0
	for i, res := range results {
		if res.Code != http.StatusCreated {
			t.Fatalf("request %d: %d %s", i, res.Code, res.Body)
		}
		if res.Header().Get("Idempotent-Replayed") == "" {
			made++
		}
		if got := servicetest.DecodeJSON[accountResponse](t, res); got.BalanceCents != 700 {
			t.Fatalf("request %d: %+v", i, got)
		}
	}
	if made != 1 {
		t.Fatalf("%d requests made the deposit, want 1", made)
	}
	if b := ts.balance(t, "heidi"); b != 700 {
		t.Fatalf("balance %d, want 700", b)
	}
	if c := servicetest.Count(t, ts.Pool, `SELECT count(*) FROM deposits`); c != 1 {
		t.Fatalf("%d deposits recorded, want 1", c)
	}
}

func TestDepositWhileTheDatabaseIsDown(t *testing.T) {
	env := servicetest.New(t, serviceName, migrationFiles)
	// The service's pool points at a port where nothing listens.
	down, err := pgxpool.New(t.Context(), fmt.Sprintf("postgres://payment@127.0.0.1:%d/sagashop?connect_timeout=2", testenv.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	svc, err := newService(down, env.Logger, env.Registry)
	if err != nil {
		t.Fatal(err)
	}
	ts := env.Service(svc.routes, svc.handlers())
	for _, key := range []string{"", "dep-down"} {
		res := servicetest.Request(t, ts.Handler, http.MethodPost, "/accounts/ivan/deposits", `{"amount_cents": 100}`,
			"Content-Type", "application/json", "Idempotency-Key", key)
		servicetest.RequireProblem(t, res, http.StatusServiceUnavailable)
		if res.Header().Get("Retry-After") == "" {
			t.Fatalf("key %q: no Retry-After", key)
		}
	}
	servicetest.RequireProblem(t, ts.Do(t, http.MethodGet, "/accounts/ivan", "", ""), http.StatusServiceUnavailable)
}
