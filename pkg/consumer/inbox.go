package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// Schema is the inbox table. Apply it in every database a consumer writes
// to; one database serves one consumer group, because the event id alone is
// the key.
const Schema = `CREATE TABLE IF NOT EXISTS processed_events (
	event_id     uuid PRIMARY KEY,
	event_type   text NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now()
)`

const insertProcessed = `INSERT INTO processed_events (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING`

// apply runs one attempt: the inbox insert and the handler in one
// transaction, then, if it committed, the handler's after-commit effects.
// duplicate reports that the inbox already held the event, in which case the
// handler did not run.
func (c *Consumer) apply(ctx context.Context, h Handler, env events.Envelope) (duplicate bool, err error) {
	ctx, committed := CollectAfterCommit(ctx)
	err = pgx.BeginFunc(ctx, c.cfg.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, insertProcessed, env.ID, env.Type)
		if err != nil {
			return fmt.Errorf("record event in inbox: %w", err)
		}
		if tag.RowsAffected() == 0 {
			duplicate = true
			return nil
		}
		return c.callHandler(ctx, h, tx, env)
	})
	if err != nil {
		return false, fmt.Errorf("apply %s %s: %w", env.Type, env.ID, err)
	}
	committed()
	return duplicate, nil
}

const insertProcessedBatch = `INSERT INTO processed_events (event_id, event_type)
SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT DO NOTHING RETURNING event_id`

// applyBatch runs one attempt at items: their inbox rows (one statement) and
// their handlers, in order, in one transaction, then, if it committed, each
// one's outcome and after-commit effects, in order. On failure nothing was
// applied, and failed is the index of the item whose handler failed, or -1
// when the failure is not one item's (the inbox insert, the commit, a
// statement after a handler left the transaction aborted).
func (c *Consumer) applyBatch(ctx context.Context, items []*item) (failed int, err error) {
	failed = -1
	ids := make([]uuid.UUID, len(items))
	types := make([]string, len(items))
	for i, it := range items {
		id, err := uuid.Parse(it.env.ID)
		if err != nil {
			// The inbox insert would fail on it: one at a time, as today.
			return -1, fmt.Errorf("event id %q: %w", it.env.ID, err)
		}
		ids[i], types[i] = id, it.env.Type
	}
	duplicate := make([]bool, len(items))
	hooks := make([]func(), len(items))
	// The batch's own statements (begin, inbox, commit) are traced in the
	// first message's trace; each handler's in its message's.
	tctx := items[0].ctx
	err = pgx.BeginFunc(tctx, c.cfg.Pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(tctx, insertProcessedBatch, ids, types)
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return fmt.Errorf("record %d events in inbox: %w", len(items), err)
		}
		fresh := make(map[uuid.UUID]bool, len(inserted))
		for _, id := range inserted {
			fresh[id] = true
		}
		for i, it := range items {
			if !fresh[ids[i]] {
				duplicate[i] = true // already there, or earlier in this batch
				continue
			}
			delete(fresh, ids[i])
			hctx, committed := CollectAfterCommit(it.ctx)
			if err := c.callHandler(hctx, it.h, tx, it.env); err != nil {
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "25P02" { // in_failed_sql_transaction: an earlier handler's doing
					failed = i
				}
				return fmt.Errorf("apply %s %s: %w", it.env.Type, it.env.ID, err)
			}
			hooks[i] = committed
		}
		return nil
	})
	if err != nil {
		return failed, err
	}
	for i, it := range items {
		c.recordApplied(it.ctx, it.env, duplicate[i])
		if hooks[i] != nil {
			hooks[i]()
		}
	}
	return -1, nil
}

// callHandler turns a handler's panic into an unclassified error, so a
// message that crashes its handler is retried and then dead-lettered instead
// of crashing the service on every redelivery.
func (c *Consumer) callHandler(ctx context.Context, h Handler, tx pgx.Tx, env events.Envelope) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.log.ErrorContext(ctx, "handler panicked", telemetry.LogEventType, env.Type, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, tx, env)
}

type afterCommitKey struct{}

type afterCommitHooks struct{ fns []func() }

// CollectAfterCommit returns ctx for running a handler in: the AfterCommit
// effects it registers are collected, and committed runs them. Call
// committed once the handler's transaction has committed, and not at all if
// it did not. The consumer does this for every attempt; a test that calls a
// handler itself can too.
func CollectAfterCommit(ctx context.Context) (_ context.Context, committed func()) {
	hooks := &afterCommitHooks{}
	return context.WithValue(ctx, afterCommitKey{}, hooks), func() {
		for _, f := range hooks.fns {
			f()
		}
	}
}

// AfterCommit arranges for f to run once the transaction of the handler
// whose ctx this is has committed, and never if it rolls back (a retried
// attempt registers its own). Use it for effects outside the database that
// must follow only what really happened, such as metrics. Outside a
// consumer's handler (a test calling the handler in its own transaction) f
// runs at once.
func AfterCommit(ctx context.Context, f func()) {
	if hooks, ok := ctx.Value(afterCommitKey{}).(*afterCommitHooks); ok {
		hooks.fns = append(hooks.fns, f)
		return
	}
	f()
}

// pruneLoop deletes inbox rows older than the retention, at start and then
// every pruneInterval, so the table does not grow without bound.
func (c *Consumer) pruneLoop(ctx context.Context) {
	for {
		n, err := c.pruneInbox(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Warn("prune processed events", telemetry.Err(err))
		case n > 0:
			c.log.Info("processed events pruned", "rows", n, "older_than", c.cfg.InboxRetention)
		}
		if !sleep(ctx, pruneInterval) {
			return
		}
	}
}

func (c *Consumer) pruneInbox(ctx context.Context) (int64, error) {
	tag, err := c.cfg.Pool.Exec(ctx, `DELETE FROM processed_events WHERE processed_at < now() - make_interval(secs => $1)`,
		c.cfg.InboxRetention.Seconds())
	if err != nil {
		return 0, fmt.Errorf("prune processed events: %w", err)
	}
	return tag.RowsAffected(), nil
}

// withEventLogAttrs tags ctx's log lines with the event's order and id.
func withEventLogAttrs(ctx context.Context, orderID, eventID string) context.Context {
	return telemetry.WithLogAttrs(ctx, slog.String(telemetry.LogOrderID, orderID), slog.String(telemetry.LogEventID, eventID))
}
