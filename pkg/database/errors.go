package database

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable reports whether err says that the database cannot be reached
// right now, and nothing about the request or the data: no connection could
// be opened (refused, timed out, the server starting up or shutting down),
// the connection was lost or closed mid-statement, or the server ended the
// session (SQLSTATE 57P01, 57P02, 57P03, class 08, 53300 too many
// connections). The same request succeeds once the database is back, so an
// HTTP edge answers 503 and a consumer retries. A cancelled context (the
// caller gave up) is not unavailability.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableSQLState(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		pgconn.SafeToRetry(err) || // the statement never reached the server
		pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || // a pool acquire or query outlived its deadline
		errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) // connection lost mid-reply
}

// unavailableSQLState lists the PostgreSQL error codes of a server that is
// going away, not yet there, or out of connections.
func unavailableSQLState(code string) bool {
	switch code {
	case "57P01", // admin_shutdown (backend terminated)
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now (starting up, recovering)
		"53300": // too_many_connections
		return true
	}
	return len(code) == 5 && code[:2] == "08" // connection exception
}
