package validation

import (
	"errors"
	"fmt"
	"testing"
)

func TestFields(t *testing.T) {
	if err := (Fields{}).Err(); err != nil {
		t.Errorf("empty Fields.Err() = %v, want nil", err)
	}
	err := fmt.Errorf("place order: %w", Fields{"items": "is empty", "email": "is required"}.Err())
	var f Fields
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &f) || len(f.FieldErrors()) != 2 {
		t.Fatalf("%v: want ErrInvalid with two fields", err)
	}
	if got, want := err.Error(), "place order: invalid: map[email:is required items:is empty]"; got != want {
		t.Errorf("Error() = %q, want %q (fields sorted)", got, want)
	}
}
