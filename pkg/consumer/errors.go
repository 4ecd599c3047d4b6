package consumer

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagashop/sagashop/pkg/events"
)

// ErrPermanent marks a handler error that retrying cannot fix (the event
// contradicts the handler's state or its data cannot be used): the message is
// dead-lettered at once.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds; the error
// text stays err's. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() error        { return e.err }
func (e permanentError) Is(target error) bool { return target == ErrPermanent }

// ErrTransient marks a handler error about the world outside the database
// (a mail server refusing for now, a dependency down): the message is
// retried, in place, for as long as it takes, never dead-lettered.
var ErrTransient = errors.New("transient failure")

// Transient wraps err so that errors.Is(err, ErrTransient) holds; the error
// text stays err's. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transientError{err}
}

type transientError struct{ err error }

func (e transientError) Error() string        { return e.err.Error() }
func (e transientError) Unwrap() error        { return e.err }
func (e transientError) Is(target error) bool { return target == ErrTransient }

type errorClass int

const (
	classUnclassified errorClass = iota // retried up to MaxAttempts
	classTransient                      // retried until it succeeds
	classPermanent                      // dead-lettered at once
	classNewerVersion                   // retried for Config.UnknownVersionWait
)

// classify decides what a failed attempt deserves. A schema version newer
// than this build knows comes first, even wrapped as permanent: the event is
// not broken, this build is behind (a rolling deploy), and upgrading it cures
// the error. Permanent wins over transient: a handler that says the event is
// unusable is believed even if a database error is wrapped alongside.
func classify(err error) errorClass {
	switch {
	case errors.Is(err, events.ErrNewerVersion):
		return classNewerVersion
	case errors.Is(err, ErrPermanent),
		errors.Is(err, events.ErrMalformed),
		errors.Is(err, events.ErrUnknownVersion),
		errors.Is(err, events.ErrUnexpectedType),
		errors.Is(err, events.ErrMissingHeader),
		errors.Is(err, events.ErrUnsupportedContent):
		return classPermanent
	case dataException(err):
		return classPermanent
	case errors.Is(err, ErrTransient), transient(err):
		return classTransient
	default:
		return classUnclassified
	}
}

// transient reports errors that say nothing about the event, only about the
// database or network right now: the same message will succeed later, so it
// is retried for as long as it takes rather than dead-lettered.
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientSQLState(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) ||
		pgconn.SafeToRetry(err) || // the statement never reached the server
		pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || // a timeout the handler set on a query
		errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) // connection lost mid-reply
}

// dataException reports PostgreSQL's class 22, data exceptions: a value the
// event carries that the database cannot hold (a NUL or an invalid byte in
// text, 22021/22P05; a number out of range, 22003; a string too long,
// 22001). The same event fails the same way on every attempt, so it is
// dead-lettered at once rather than after MaxAttempts.
func dataException(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

// transientSQLState lists the PostgreSQL error codes that a retry of the whole
// transaction can cure.
func transientSQLState(code string) bool {
	switch code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03", // lock_not_available (lock_timeout)
		"57014", // query_canceled (statement_timeout)
		"57P01", // admin_shutdown (backend terminated)
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now (starting up, recovering)
		"25006": // read_only_sql_transaction (connected to a standby during failover)
		return true
	}
	if len(code) == 5 {
		switch code[:2] {
		case "08", // connection exception
			"53": // insufficient resources (too many connections, out of memory, disk full)
			return true
		}
	}
	return false
}

// backoff is the delay before retry number failures (1, 2, ...): doubling
// from MinBackoff up to MaxBackoff, with jitter so that consumers failing
// together do not retry in lockstep.
func (c *Consumer) backoff(failures int) time.Duration {
	d := c.cfg.MaxBackoff
	if shift := failures - 1; shift < 32 {
		if e := c.cfg.MinBackoff << shift; e > 0 && e < d {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
