package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/sagashop/sagashop/pkg/servicetest"
	"github.com/sagashop/sagashop/pkg/web"
)

// The fuzz targets of the payment API, through its real router on a schema
// of the local PostgreSQL. Their seed corpus is in testdata/fuzz/<target>;
// `go test` runs it as ordinary tests, `go test -run '^$' -fuzz
// '^FuzzDeposit$' ./services/payment/` explores.

func newFuzzService(f *testing.F) *servicetest.Service {
	f.Helper()
	env := servicetest.New(f, serviceName, migrationFiles)
	svc, err := newService(env.Pool, env.Logger, env.Registry)
	if err != nil {
		f.Fatal(err)
	}
	return env.Service(svc.routes, svc.handlers())
}

// FuzzDeposit posts body with contentType and an Idempotency-Key (none when
// empty) to POST /accounts/{customerID}/deposits, the id path-escaped as a
// client sends it, with no account yet. It is answered 201, 400, 404 (no
// route: an empty id), 413, 415 or 422, never 5xx; anything but a 201
// stores nothing. A 201 is for an id web.CheckID accepts and an amount from
// MinDepositCents to MaxDepositCents, and the balance is that amount; with
// a key, sending it again is answered the same, marked replayed, and
// credits nothing more.
func FuzzDeposit(f *testing.F) {
	svc := newFuzzService(f)
	f.Fuzz(func(t *testing.T, customerID, contentType string, body []byte, key string) {
		ctx := context.Background()
		if _, err := svc.Pool.Exec(ctx, `DELETE FROM deposit_idempotency_keys; DELETE FROM deposits; DELETE FROM accounts`); err != nil {
			t.Fatal(err)
		}
		post := func() *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, "/accounts/"+url.PathEscape(customerID)+"/deposits", bytes.NewReader(body))
			if contentType != "" {
				r.Header.Set("Content-Type", contentType)
			}
			if key != "" {
				r.Header.Set("Idempotency-Key", key)
			}
			return servicetest.Serve(t, svc.Handler, r)
		}
		rec := post()
		switch rec.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			servicetest.RequireProblem(t, rec, rec.Code)
			servicetest.RequireEmpty(t, svc.Pool, "accounts", "deposits", "deposit_idempotency_keys")
			return
		case http.StatusNotFound:
			if customerID != "" {
				t.Fatalf("POST deposit for %q = 404 %s", customerID, rec.Body)
			}
			return
		case http.StatusCreated:
		default:
			t.Fatalf("POST deposit for %q = %d %s", customerID, rec.Code, rec.Body)
		}
		if !web.CheckID(customerID) {
			t.Fatalf("201 for the customer id %q", customerID)
		}
		var req depositRequest
		if err := json.Unmarshal(body, &req); err != nil || req.AmountCents == nil {
			t.Fatalf("201 for %q: %v", body, err)
		}
		amount := *req.AmountCents
		if amount < MinDepositCents || amount > MaxDepositCents {
			t.Fatalf("201 for the amount %d", amount)
		}
		acc := servicetest.DecodeJSON[accountResponse](t, rec)
		if acc.CustomerID != customerID || acc.BalanceCents != amount {
			t.Fatalf("201 %s, want %q with %d", rec.Body, customerID, amount)
		}
		if key == "" {
			return
		}
		again := post()
		if again.Code != http.StatusCreated || again.Header().Get("Idempotent-Replayed") != "true" || again.Body.String() != rec.Body.String() {
			t.Fatalf("the same deposit with key %q again = %d %s, want %s replayed", key, again.Code, again.Body, rec.Body)
		}
		if n := servicetest.Count(t, svc.Pool, `SELECT count(*) FROM deposits`); n != 1 {
			t.Fatalf("a replay credited again: %d deposits", n)
		}
	})
}

// FuzzGetAccount reads GET /accounts/{id} and GET /payments/{id} with id
// path-escaped: 200 for the account opened in the setup (c-1), 404 for any
// other id and for every payment (there is none), never another status.
func FuzzGetAccount(f *testing.F) {
	svc := newFuzzService(f)
	if rec := servicetest.Request(f, svc.Handler, http.MethodPost, "/accounts/c-1/deposits", `{"amount_cents": 100}`,
		"Content-Type", "application/json"); rec.Code != http.StatusCreated {
		f.Fatalf("deposit = %d %s", rec.Code, rec.Body)
	}
	f.Fuzz(func(t *testing.T, id string) {
		for _, path := range []string{"/accounts/", "/payments/"} {
			rec := servicetest.Serve(t, svc.Handler, httptest.NewRequest(http.MethodGet, path+url.PathEscape(id), nil))
			want := http.StatusNotFound
			if path == "/accounts/" && id == "c-1" {
				want = http.StatusOK
			}
			if rec.Code != want {
				t.Fatalf("GET %s%q = %d %s, want %d", path, id, rec.Code, rec.Body, want)
			}
		}
	})
}
