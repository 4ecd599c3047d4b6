package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/database"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// DeadLetterSchema is the DDL of the outbox's dead letters, for the
// service's migrations (after Schema): the rows Kafka refused for good (too
// large for the broker, invalid, or for a topic that stayed unknown), as
// they were in the outbox, with why and when. The relay moves a row here in
// one statement, so it is in one table or the other, never both or neither;
// Requeue moves it back.
const DeadLetterSchema = `CREATE TABLE IF NOT EXISTS outbox_dead_letters (
    id         bigint PRIMARY KEY,
    event_id   uuid NOT NULL,
    topic      text NOT NULL,
    key        text NOT NULL,
    envelope   jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    reason     text NOT NULL,
    error      text NOT NULL
);`

const moveSQL = `WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS d(id, reason, error)
), moved AS (
    DELETE FROM outbox o USING d WHERE o.id = d.id
    RETURNING o.id, o.event_id, o.topic, o.key, o.envelope, o.created_at, d.reason, d.error
)
INSERT INTO outbox_dead_letters (id, event_id, topic, key, envelope, created_at, reason, error)
SELECT id, event_id, topic, key, envelope, created_at, reason, error FROM moved`

// moveToDeadLetters moves the dead rows of a round out of the outbox, and
// counts and logs each once it is moved. Like deletePublished it runs even
// when the relay is being stopped, for up to deleteTimeout; rows it fails to
// move stay in the outbox and are tried again.
func (r *Relay) moveToDeadLetters(ctx context.Context, conn *pgx.Conn, dead []deadRow) error {
	ids := make([]int64, len(dead))
	reasons := make([]string, len(dead))
	msgs := make([]string, len(dead))
	for i, d := range dead {
		ids[i], reasons[i], msgs[i] = d.row.id, d.reason, d.err.Error()
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	if _, err := conn.Exec(dctx, moveSQL, ids, reasons, msgs); err != nil {
		return fmt.Errorf("move %d outbox rows to the dead letters: %w", len(ids), err)
	}
	for _, d := range dead {
		r.m.deadLettered.WithLabelValues(d.reason).Inc()
		r.log.ErrorContext(d.logCtx, "outbox event dead-lettered: Kafka refused it for good; the rows behind it go on",
			"topic", d.row.topic, "reason", d.reason, telemetry.Err(d.err), "outbox_id", d.row.id)
	}
	return nil
}

// DeadLetter is one row of the outbox's dead letters, without its envelope
// (which may be the megabyte that made it one).
type DeadLetter struct {
	ID        int64     `db:"id" json:"id"`
	EventID   string    `db:"event_id" json:"event_id"`
	Type      string    `db:"type" json:"type"`
	Topic     string    `db:"topic" json:"topic"`
	Key       string    `db:"key" json:"key"`
	Bytes     int       `db:"bytes" json:"bytes"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
	FailedAt  time.Time `db:"failed_at" json:"failed_at"`
	Reason    string    `db:"reason" json:"reason"`
	Error     string    `db:"error" json:"error"`
}

// ErrDeadLetterNotFound is the error of Requeue for an id that is no dead
// letter (never one, or requeued already).
var ErrDeadLetterNotFound = errors.New("no such outbox dead letter")

const listDeadSQL = `SELECT id, event_id::text, envelope->>'type' AS type, topic, key,
    octet_length(envelope::text) AS bytes, created_at, failed_at, reason, error
FROM outbox_dead_letters ORDER BY id LIMIT $1`

// ListDeadLetters returns up to limit dead letters, oldest first.
func ListDeadLetters(ctx context.Context, q database.Querier, limit int) ([]DeadLetter, error) {
	rows, err := q.Query(ctx, listDeadSQL, limit)
	if err != nil {
		return nil, fmt.Errorf("list outbox dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[DeadLetter])
	if err != nil {
		return nil, fmt.Errorf("list outbox dead letters: %w", err)
	}
	return out, nil
}

const (
	lockDeadSQL    = `SELECT key FROM outbox_dead_letters WHERE id = $1 FOR UPDATE`
	requeueDeadSQL = `WITH moved AS (DELETE FROM outbox_dead_letters WHERE id = $1 RETURNING event_id, topic, key, envelope)
INSERT INTO outbox (event_id, topic, key, envelope) SELECT event_id, topic, key, envelope FROM moved RETURNING id`
)

// Requeue moves dead letter id back into the outbox, as a new row behind
// every row pending now (the relay publishes it after them, so after the
// later events of its key: the consumers' idempotency and the saga's state
// checks decide what it still means), and returns the row's new id. Requeue
// once what refused it is fixed (the topic re-created, the broker's limit
// raised): otherwise the relay sets it aside again. It returns
// ErrDeadLetterNotFound for an unknown id.
func Requeue(ctx context.Context, pool *pgxpool.Pool, id int64) (int64, error) {
	var newID int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var key string
		if err := tx.QueryRow(ctx, lockDeadSQL, id).Scan(&key); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrDeadLetterNotFound
			}
			return err
		}
		// As Write: the key lock orders this commit with the key's writers.
		b := &pgx.Batch{}
		b.Queue(keyLockSQL, key)
		b.Queue(requeueDeadSQL, id).QueryRow(func(row pgx.Row) error { return row.Scan(&newID) })
		b.Queue(notifySQL)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("requeue outbox dead letter %d: %w", id, err)
	}
	return newID, nil
}
