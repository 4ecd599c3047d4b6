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
// it). One row per letter, keyed by its position, so recording a letter
// again changes nothing.
const Schema = `CREATE TABLE IF NOT EXISTS order_dead_letters (
    dlq_topic      text        NOT NULL,
    dlq_partition  integer     NOT NULL,
    dlq_offset     bigint      NOT NULL,
    order_id       uuid        NOT NULL,
    consumer_group text        NOT NULL,
    event_type     text        NOT NULL,
    event_id       text        NOT NULL,
    reason         text        NOT NULL,
    error          text        NOT NULL,
    failed_at      timestamptz,
    replay_count   integer     NOT NULL DEFAULT 0,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
CREATE INDEX IF NOT EXISTS order_dead_letters_order_id ON order_dead_letters (order_id, failed_at)`

// Execer is what Record needs: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

const insertLetter = `INSERT INTO order_dead_letters
    (dlq_topic, dlq_partition, dlq_offset, order_id, consumer_group, event_type, event_id, reason, error, failed_at, replay_count)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT DO NOTHING`

// Record stores l in order_dead_letters (Schema) if it concerns an order:
// its order id (ce_subject, else the key) is a UUID; letters about anything
// else (a product, an undecodable message with no id) are passed over, and
// recorded reports false. Recording the same letter again changes nothing.
func Record(ctx context.Context, db Execer, l Letter) (recorded bool, err error) {
	id, err := uuid.Parse(l.OrderID)
	if err != nil {
		return false, nil
	}
	var failedAt *time.Time
	if !l.FailedAt.IsZero() {
		failedAt = &l.FailedAt
	}
	if _, err := db.Exec(ctx, insertLetter, text(l.Position.Topic), l.Position.Partition, l.Position.Offset, id,
		text(l.Group), text(l.EventType), text(l.EventID), text(l.Reason), text(l.Error), failedAt, l.ReplayCount); err != nil {
		return false, fmt.Errorf("record dead letter %s of order %s: %w", l.Position, id, err)
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
}

// Position is where the letter lies, for `sagashopctl dlq show` and replay.
func (r Recorded) Position() Position {
	return Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}

// ForOrder returns the recorded dead letters of an order, oldest failure
// first; none is an empty slice.
func ForOrder(ctx context.Context, q database.Querier, orderID uuid.UUID) ([]Recorded, error) {
	rows, err := q.Query(ctx, `SELECT dlq_topic, dlq_partition, dlq_offset, order_id, consumer_group, event_type, event_id,
    reason, error, failed_at, replay_count
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
