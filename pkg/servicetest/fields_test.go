package servicetest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

var errInvalid = errors.New("invalid")

type fieldsError map[string]string

func (f fieldsError) Error() string                  { return fmt.Sprint(map[string]string(f)) }
func (f fieldsError) Is(target error) bool           { return target == errInvalid }
func (f fieldsError) FieldErrors() map[string]string { return f }

func TestRequireFieldErrors(t *testing.T) {
	err := fmt.Errorf("put thing: %w", fieldsError{"name": "is required", "price": "must be positive"})
	if got := servicetest.RequireFieldErrors(t, err, errInvalid, "price", "name"); got["name"] != "is required" {
		t.Errorf("field errors %v", got)
	}
	tests := map[string]struct {
		err    error
		fields []string
	}{
		"no error":           {nil, []string{"name"}},
		"another sentinel":   {errors.New("invalid"), []string{"name"}},
		"no field errors":    {fmt.Errorf("%w", errInvalid), []string{"name"}},
		"a field missing":    {fieldsError{"name": "is required"}, []string{"name", "price"}},
		"a field too many":   {fieldsError{"name": "is required", "price": "bad"}, []string{"name"}},
		"another field":      {fieldsError{"price": "bad"}, []string{"name"}},
		"a message is empty": {fieldsError{"name": ""}, []string{"name"}},
	}
	for name, tt := range tests {
		if !fails(t, func(tb testing.TB) { servicetest.RequireFieldErrors(tb, tt.err, errInvalid, tt.fields...) }) {
			t.Errorf("%s: RequireFieldErrors did not fail the test", name)
		}
	}
}
