package servicetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/sagashop/sagashop/pkg/web"
)

// RequireFieldErrors fails the test unless err matches invalid (the
// domain's ErrInvalid) and names, through web.FieldErrors, exactly fields,
// each with a message; it returns the field errors. It is for the table
// tests of a domain's validation, which need no database.
func RequireFieldErrors(t testing.TB, err, invalid error, fields ...string) map[string]string {
	t.Helper()
	var fe web.FieldErrors
	if !errors.Is(err, invalid) || !errors.As(err, &fe) {
		t.Fatalf("error %v: want field errors matching %v", err, invalid)
	}
	got := fe.FieldErrors()
	if len(got) != len(fields) {
		t.Fatalf("field errors %v, want exactly %v", got, fields)
	}
	for f, msg := range got {
		if !slices.Contains(fields, f) || msg == "" {
			t.Fatalf("field errors %v, want a message for each of %v", got, fields)
		}
	}
	return got
}
