// Package validation is the one shape of a validation error in Sagashop:
// which fields of a command break which rule. It imports only the standard
// library and does no I/O, so the domain files of the services, which import
// nothing but the standard library, may use it too; pkg/web answers it with
// a 422 naming the fields, and a consumer treats it as permanent where the
// service says so.
package validation

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched (errors.Is) by every Fields error.
var ErrInvalid = errors.New("invalid")

// Fields maps the fields of a command that break a rule to what is wrong
// with each. A non-empty Fields is an error matching ErrInvalid that names
// its fields through FieldErrors (the interface pkg/web reads).
type Fields map[string]string

func (f Fields) Error() string                  { return fmt.Sprint("invalid: ", map[string]string(f)) }
func (f Fields) Is(target error) bool           { return target == ErrInvalid }
func (f Fields) FieldErrors() map[string]string { return f }

// Err returns f as an error, or nil when no field is wrong.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return f
}
