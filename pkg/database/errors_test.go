package database_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/database"
	"github.com/sagashop/sagashop/pkg/testenv"
)

func TestUnavailable(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	ctx := t.Context()

	// A pool whose server is not there: nothing listens on a port that was
	// free a moment ago.
	down, err := pgxpool.New(ctx, fmt.Sprintf("postgres://nobody@127.0.0.1:%d/none?connect_timeout=2", testenv.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	_, refused := down.Exec(ctx, "SELECT 1")

	// A session the server ends while it is in use.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	_, terminated := conn.Exec(ctx, "SELECT 1")
	_, afterTermination := conn.Exec(ctx, "SELECT 1")

	// A pool acquire that outlives its deadline (all connections taken).
	one, err := pgxpool.ParseConfig(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	one.MaxConns = 1
	single, err := pgxpool.NewWithConfig(ctx, one)
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	held, err := single.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	shortCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, acquireTimeout := single.Exec(shortCtx, "SELECT 1")

	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	_, callerGaveUp := pool.Exec(cancelled, "SELECT 1")

	_, syntax := pool.Exec(ctx, "SELEC 1")
	_, divide := pool.Exec(ctx, "SELECT 1/0")
	noRows := pool.QueryRow(ctx, "SELECT 1 WHERE false").Scan(new(int))

	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"connection refused, wrapped", fmt.Errorf("place order: %w", refused), true},
		{"session terminated by the server", terminated, true},
		{"statement on the closed connection", afterTermination, true},
		{"pool acquire past its deadline", acquireTimeout, true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"caller cancelled", callerGaveUp, false},
		{"syntax error", syntax, false},
		{"division by zero", divide, false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, false},
		{"no rows", noRows, false},
		{"domain error", errors.New("not found"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want && tt.err == nil {
				t.Fatal("the operation did not fail")
			}
			if got := database.Unavailable(tt.err); got != tt.want {
				t.Fatalf("Unavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
