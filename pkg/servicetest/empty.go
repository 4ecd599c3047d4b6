package servicetest

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// RequireEmpty fails the test unless every one of tables has no rows: for
// tests that a refused request or event stored nothing and emitted nothing
// (include "outbox").
func RequireEmpty(t testing.TB, q Querier, tables ...string) {
	t.Helper()
	for _, table := range tables {
		if n := Count(t, q, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()); n != 0 {
			t.Fatalf("%s has %d rows, want none", table, n)
		}
	}
}
