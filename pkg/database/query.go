package database

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// Querier is what reads need: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// QueryOne runs sql and returns its single row as a T, columns matched to
// T's fields by name (db tags). It returns notFound, the caller's domain
// error, when there is no row, and the query's error otherwise, for the
// caller to wrap.
func QueryOne[T any](ctx context.Context, q Querier, notFound error, sql string, args ...any) (T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[T])
	if errors.Is(err, pgx.ErrNoRows) {
		return row, notFound
	}
	return row, err
}
