// Package database opens a service's PostgreSQL pool (traced with
// OpenTelemetry) and applies its migrations: first the shared tables its
// caller gives (the outbox and the processed-events inbox, from the packages
// that own them), then the service's own embedded .sql files. Each service connects with its own login role, whose
// search_path is its own schema, so all SQL here and in the services is
// unqualified.
package database

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"net"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.opentelemetry.io/otel/trace"
)

// Open returns a pool for url with at most maxConns connections whose
// queries are traced with tp, after checking that the database answers.
func Open(ctx context.Context, url string, maxConns int32, tp trace.TracerProvider) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	cfg.MaxConns = maxConns
	// A peer that stops answering (a host gone, a network dropping
	// everything) is found by keepalives in about 11 s rather than Go's
	// default 2 minutes; the outbox relay's lease bounds its own connection
	// tighter still (pkg/outbox).
	cfg.ConnConfig.DialFunc = (&net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3,
	}}).DialContext
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp), otelpgx.WithTrimSQLInSpanName())
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database %s@%s/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return pool, nil
}

// MaxShared is how many shared migrations there can be: a service's own
// files start at version 00010.
const MaxShared = 9

// Migrate applies shared, the DDL of the tables every service has (shared[0]
// is version 1, and so on; append, never reorder), and then every migration
// in the migrations/ folder of embedded (a service's //go:embed
// migrations/*.sql; files named like 00010_init.sql, in goose's format) to
// the schema the pool's search_path selects. Concurrent callers (two
// replicas starting at once) are serialized by an advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool, embedded fs.FS, logger *slog.Logger, shared ...string) error {
	if len(shared) > MaxShared {
		return fmt.Errorf("migrate: %d shared migrations, at most %d", len(shared), MaxShared)
	}
	fsys, err := fs.Sub(embedded, "migrations")
	if err != nil {
		return fmt.Errorf("migrations folder: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	// The lock is per schema: goose's default is one id for the whole
	// database, which would make five services starting together wait for
	// each other, in goose's 5 s polling steps.
	var schema string
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("current schema: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("migrations/" + schema))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	exec := func(ddl string) *goose.GoFunc {
		return &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, ddl)
			return err
		}}
	}
	goMigrations := make([]*goose.Migration, len(shared))
	for i, ddl := range shared {
		goMigrations[i] = goose.NewGoMigration(int64(i+1), exec(ddl), nil)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker),
		goose.WithGoMigrations(goMigrations...),
	)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		logger.InfoContext(ctx, "migration applied", "version", r.Source.Version, "path", r.Source.Path, "duration", r.Duration)
	}
	return nil
}
