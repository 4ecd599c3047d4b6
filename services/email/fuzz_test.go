package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/servicetest"
)

// FuzzListEmails reads GET /emails with rawQuery as its query, through the
// real router on a schema of the local PostgreSQL: 200 with a JSON list
// exactly when the query has one order_id that is a UUID in canonical
// form, else 400 naming order_id; never another status. The seed corpus is
// in testdata/fuzz/FuzzListEmails; `go test -run '^$' -fuzz
// '^FuzzListEmails$' ./services/email/` explores.
func FuzzListEmails(f *testing.F) {
	env := servicetest.New(f, serviceName, migrationsFS)
	s, err := newService(env.Pool, env.Logger, nil, env.Registry)
	if err != nil {
		f.Fatal(err)
	}
	h := env.Service(s.routes, s.handlers()).Handler
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest(http.MethodGet, "/emails", nil)
		r.URL.RawQuery = rawQuery
		rec := servicetest.Serve(t, h, r)
		values, _ := url.ParseQuery(rawQuery) // what it reads, as r.URL.Query does
		ids := values["order_id"]
		wantOK := len(ids) == 1
		if wantOK {
			_, err := events.ParseOrderID(ids[0])
			wantOK = err == nil
		}
		switch rec.Code {
		case http.StatusOK:
			var list []json.RawMessage
			if !wantOK || json.Unmarshal(rec.Body.Bytes(), &list) != nil || list == nil {
				t.Fatalf("GET /emails?%s = 200 %s", rawQuery, rec.Body)
			}
		case http.StatusBadRequest:
			if wantOK {
				t.Fatalf("GET /emails?%s = 400 %s", rawQuery, rec.Body)
			}
			if p := servicetest.RequireProblem(t, rec, http.StatusBadRequest); p.Errors["order_id"] == "" {
				t.Fatalf("400 without a word on order_id: %+v", p)
			}
		default:
			t.Fatalf("GET /emails?%s = %d %s", rawQuery, rec.Code, rec.Body)
		}
	})
}
