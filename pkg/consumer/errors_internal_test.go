package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagashop/sagashop/pkg/events"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("update stock: %w", &pgconn.PgError{Code: code}) }
	for name, tc := range map[string]struct {
		err  error
		want errorClass
	}{
		"serialization failure":    {pg("40001"), classTransient},
		"deadlock":                 {pg("40P01"), classTransient},
		"lock timeout":             {pg("55P03"), classTransient},
		"statement timeout":        {pg("57014"), classTransient},
		"backend terminated":       {pg("57P01"), classTransient},
		"connection failure":       {pg("08006"), classTransient},
		"too many connections":     {pg("53300"), classTransient},
		"unique violation":         {pg("23505"), classUnclassified},
		"check violation":          {pg("23514"), classUnclassified},
		"NUL in text":              {fmt.Errorf("insert: %w", pg("22021")), classPermanent},
		"untranslatable character": {pg("22P05"), classPermanent},
		"number out of range":      {pg("22003"), classPermanent},
		"connect error":            {&pgconn.ConnectError{}, classTransient},
		"query deadline":           {fmt.Errorf("query: %w", context.DeadlineExceeded), classTransient},
		"connection lost":          {fmt.Errorf("read: %w", io.ErrUnexpectedEOF), classTransient},
		"malformed data":           {fmt.Errorf("decode: %w", events.ErrMalformed), classPermanent},
		"unknown version":          {fmt.Errorf("decode: %w", events.ErrUnknownVersion), classPermanent},
		"newer version":            {fmt.Errorf("decode: %w", events.ErrNewerVersion), classNewerVersion},
		"newer version, permanent": {Permanent(fmt.Errorf("decode: %w", events.ErrNewerVersion)), classNewerVersion},
		"unexpected type":          {events.ErrUnexpectedType, classPermanent},
		"permanent":                {Permanent(errors.New("order unknown")), classPermanent},
		"permanent over transient": {Permanent(pg("40001")), classPermanent},
		"anything else":            {errors.New("something odd"), classUnclassified},
		"transient marked":         {Transient(errors.New("smtp 451")), classTransient},
		"transient nil":            {Transient(nil), classUnclassified},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("%s: classify(%v) = %d, want %d", name, tc.err, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	c := &Consumer{cfg: Config{MinBackoff: 50 * time.Millisecond, MaxBackoff: 5 * time.Second}}
	for failures, want := range map[int]time.Duration{1: 50 * time.Millisecond, 2: 100 * time.Millisecond, 5: 800 * time.Millisecond, 8: 5 * time.Second, 1000: 5 * time.Second} {
		for range 100 {
			if got := c.backoff(failures); got < want/2 || got > want {
				t.Fatalf("backoff(%d) = %s, want between %s and %s", failures, got, want/2, want)
			}
		}
	}
}
