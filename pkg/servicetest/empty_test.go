package servicetest_test

import (
	"testing"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

func TestRequireEmpty(t *testing.T) {
	env := servicetest.New(t, "thing", migrations())
	servicetest.RequireEmpty(t, env.Pool, "things", "outbox")
	if _, err := env.Pool.Exec(t.Context(), `INSERT INTO things VALUES ('MUG')`); err != nil {
		t.Fatal(err)
	}
	if !fails(t, func(tb testing.TB) { servicetest.RequireEmpty(tb, env.Pool, "outbox", "things") }) {
		t.Error("RequireEmpty did not fail for a table with a row")
	}
}
