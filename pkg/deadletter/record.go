package deadletter

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sagashop/sagashop/pkg/database"
)

// Schema is the table of the dead letters that concern orders, which the
// service running Watch with Record keeps (the order service: an order
// whose event was dead-lettered anywhere is stuck until someone replays
// it). One row per letter, keyed by its origin (Letter.Origin: the group
// and the original_* position), so recording a letter again changes
// nothing and recording a copy of it (the message dead-lettered again after
// a redelivery) only adds the copy's position to copies. dlq_* is the
// position of the first copy recorded. The same table as the order
// service's migrations make.
const Schema = `CREATE TABLE IF NOT EXISTS order_dead_letters (
    dlq_topic          text        NOT NULL,
    dlq_partition      integer     NOT NULL,
    dlq_offset         bigint      NOT NULL,
    original_topic     text        NOT NULL,
    original_partition integer     NOT NULL,
    original_offset    bigint      NOT NULL,
    copies             text[]      NOT NULL,
    order_id           uuid        NOT NULL,
    consumer_group     text        NOT NULL,
    event_type         text        NOT NULL,
    event_id           text        NOT NULL,
    reason             text        NOT NULL,
    error              text        NOT NULL,
    failed_at          timestamptz,
    replay_count       integer     NOT NULL DEFAULT 0,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, original_topic, original_partition, original_offset),
    UNIQUE (dlq_topic, dlq_partition, dlq_offset)
);
CREATE INDEX IF NOT EXISTS order_dead_letters_order_id ON order_dead_letters (order_id, failed_at)`

// Execer is what Record needs: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertLetter records a letter whose origin and position are both new;
// addCopy then adds its position to the row of its origin when it is a
// copy. Each is idempotent, so the pair is too, without a transaction.
const (
	insertLetter = `INSERT INTO order_dead_letters
    (dlq_topic, dlq_partition, dlq_offset, original_topic, original_partition, original_offset, copies,
     order_id, consumer_group, event_type, event_id, reason, error, failed_at, replay_count)
VALUES ($1, $2, $3, $4, $5, $6, ARRAY[$7::text], $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT DO NOTHING`
	addCopy = `UPDATE order_dead_letters SET copies = array_append(copies, $5::text)
WHERE consumer_group = $1 AND original_topic = $2 AND original_partition = $3 AND original_offset = $4
    AND NOT $5::text = ANY (copies)`
)

// Record stores l in order_dead_letters (Schema) if it concerns an order:
// its order id (ce_subject, else the key) is a UUID; letters about anything
// else (a product, an undecodable message with no id) are passed over, and
// recorded reports false. Recording the same letter again changes nothing;
// recording a copy of a recorded letter (the same Letter.Origin, another
// position) adds one to the row's copies and changes nothing else.
func Record(ctx context.Context, db Execer, l Letter) (recorded bool, err error) {
	id, err := uuid.Parse(l.OrderID)
	if err != nil {
		return false, nil
	}
	var failedAt *time.Time
	if !l.FailedAt.IsZero() {
		failedAt = &l.FailedAt
	}
	o, _ := l.Origin()
	pos := text(l.Position.String())
	tag, err := db.Exec(ctx, insertLetter, text(l.Position.Topic), l.Position.Partition, l.Position.Offset,
		text(o.Topic), o.Partition, o.Offset, pos, id,
		text(l.Group), text(l.EventType), text(l.EventID), text(l.Reason), text(l.Error), failedAt, l.ReplayCount)
	if err != nil {
		return false, fmt.Errorf("record dead letter %s of order %s: %w", l.Position, id, err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := db.Exec(ctx, addCopy, text(o.Group), text(o.Topic), o.Partition, o.Offset, pos); err != nil {
			return false, fmt.Errorf("record dead letter %s of order %s as a copy of %s: %w", l.Position, id, o.Position, err)
		}
	}
	return true, nil
}

// text is s as a PostgreSQL text value can hold it: the headers of a
// letter are whatever bytes its producer sent, and PostgreSQL refuses
// invalid UTF-8 and NUL, which would leave the watch retrying the letter
// forever. Both become U+FFFD.
func text(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Recorder is a WatchConfig.Handle that records each letter with Record.
func Recorder(db Execer) func(ctx context.Context, l Letter) error {
	return func(ctx context.Context, l Letter) error {
		_, err := Record(ctx, db, l)
		return err
	}
}

// Recorded is a row of order_dead_letters: one dead letter of an order.
type Recorded struct {
	Topic     string     `db:"dlq_topic" json:"dlq_topic"`
	Partition int        `db:"dlq_partition" json:"dlq_partition"`
	Offset    int64      `db:"dlq_offset" json:"dlq_offset"`
	OrderID   uuid.UUID  `db:"order_id" json:"-"`
	Group     string     `db:"consumer_group" json:"group"`
	EventType string     `db:"event_type" json:"event_type"`
	EventID   string     `db:"event_id" json:"event_id"`
	Reason    string     `db:"reason" json:"reason"`
	Error     string     `db:"error" json:"error"`
	FailedAt  *time.Time `db:"failed_at" json:"failed_at,omitempty"`
	Replays   int        `db:"replay_count" json:"replay_count"`
	// Copies is how many records of the dead-letter topics hold this
	// letter (1, or more for a message dead-lettered again after a
	// redelivery); Topic, Partition and Offset are the first one's.
	Copies int `db:"copies" json:"copies"`
}

// Position is where the letter lies, for `sagashopctl dlq show` and replay.
func (r Recorded) Position() Position {
	return Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}

// ForOrder returns the recorded dead letters of an order, each once, oldest
// failure first; none is an empty slice.
func ForOrder(ctx context.Context, q database.Querier, orderID uuid.UUID) ([]Recorded, error) {
	rows, err := q.Query(ctx, `SELECT dlq_topic, dlq_partition, dlq_offset, order_id, consumer_group, event_type, event_id,
    reason, error, failed_at, replay_count, cardinality(copies) AS copies
FROM order_dead_letters WHERE order_id = $1
ORDER BY failed_at NULLS LAST, dlq_topic, dlq_partition, dlq_offset`, orderID)
	if err != nil {
		return nil, fmt.Errorf("dead letters of order %s: %w", orderID, err)
	}
	letters, err := pgx.CollectRows(rows, pgx.RowToStructByName[Recorded])
	if err != nil {
		return nil, fmt.Errorf("dead letters of order %s: %w", orderID, err)
	}
	if letters == nil {
		letters = []Recorded{}
	}
	return letters, nil
}
