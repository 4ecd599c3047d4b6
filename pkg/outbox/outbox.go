// Package outbox publishes a service's events to Kafka from its own database:
// a use case writes its events into the outbox table in the same transaction
// as its state (Write), and a relay (Relay) publishes committed rows and
// deletes them.
//
// Guarantee: every committed event is published at least once, and events of
// one key are published in commit order; consumers must be idempotent.
//
// The exception is an event Kafka refuses for good (larger than the broker
// takes, invalid, or for a topic that stays unknown): the relay moves its row
// to the dead letters (DeadLetterSchema; counted in
// outbox_dead_lettered_total, logged at ERROR) so that the rows behind it,
// later events of its own key included, are published. Its saga does not
// hang on it: the order's deadline ends it. An operator lists the dead
// letters and requeues one (ListDeadLetters, Requeue; over HTTP with
// AdminRoutes, `sagashopctl outbox`) once what refused it is fixed. Write
// refuses an event too large to ever be published (ErrTooLarge), so that
// one never gets this far.
//
// One relay leads per schema, holding a session advisory lock on a
// connection PostgreSQL ends after 8 s without a query (a lease the leader
// renews every second): a leader whose host vanished is replaced within
// about 9 s, not when TCP gives up (see leaseIdle in relay.go).
//
// The table lives in the service's own schema (unqualified names, chosen by
// search_path), so one database can hold several services. Write notifies the
// channel 'outbox_' || current_schema(), so schema names must stay within
// 56 bytes to keep the channel name inside PostgreSQL's 63-byte limit.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
)

// Schema is the DDL of the outbox table, for the service's migrations. It
// holds only rows not yet published: the relay deletes what it published.
const Schema = `CREATE TABLE IF NOT EXISTS outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    topic      text NOT NULL,
    key        text NOT NULL,
    envelope   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);`

// The per-key lock and the relay's leader lock are both keyed by strings
// starting with the channel name, so services sharing a database never
// contend for each other's locks.
const (
	keyLockSQL = `SELECT pg_advisory_xact_lock(hashtextextended('outbox_' || current_schema() || '/' || $1, 0))`
	insertSQL  = `INSERT INTO outbox (event_id, topic, key, envelope) VALUES ($1, $2, $3, $4)`
	// PostgreSQL delivers identical notifications of one transaction once,
	// so a use case that writes many events still sends one NOTIFY.
	notifySQL = `SELECT pg_notify('outbox_' || current_schema(), '')`
)

// ErrTooLarge is the error of Write for an event whose Kafka message would be
// larger than the producer sends (broker.MaxBatchBytes): it could never be
// published. The use case fails; nothing of it is committed.
var ErrTooLarge = errors.New("event too large for Kafka")

// Write stores e in tx for publication on topic, keyed by e.Subject. It
// fails with events.ErrMalformed when e lacks required metadata, and with
// ErrTooLarge when it could never be published. If
// e.TraceParent is empty, the trace context of ctx is recorded first, so the
// publish span and the consumers join the trace of the use case.
//
// Write takes a transaction-scoped advisory lock on the key before inserting:
// two transactions writing the same key are serialized, so a later commit
// always gets a larger id, and the relay, which publishes in id order, keeps
// one key's events in commit order. The lock is held until tx ends, so keep
// transactions that write events short.
func Write(ctx context.Context, tx pgx.Tx, topic string, e events.Envelope) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("write %s %s to outbox: %w", e.Type, e.ID, err)
	}
	if e.TraceParent == "" {
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, carrier)
		e.TraceParent = carrier.Get("traceparent")
		e.TraceState = carrier.Get("tracestate")
	}
	if n := messageSize(topic, e); n > broker.MaxBatchBytes {
		return fmt.Errorf("write %s %s to outbox: %w: its message is %d bytes, at most %d", e.Type, e.ID, ErrTooLarge, n, broker.MaxBatchBytes)
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s %s for outbox: %w", e.Type, e.ID, err)
	}
	// One round trip: the statements run in order, so the insert (and the
	// id it draws) waits for the key lock.
	b := &pgx.Batch{}
	b.Queue(keyLockSQL, e.Subject)
	b.Queue(insertSQL, e.ID, topic, e.Subject, body)
	b.Queue(notifySQL)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write %s %s to outbox: %w", e.Type, e.ID, err)
	}
	return nil
}

// messageSize is the size of e's message on topic as the relay sends it: with
// a trace context of its own publication span (a traceparent is always 55
// characters).
func messageSize(topic string, e events.Envelope) int {
	e.TraceParent = strings.Repeat("0", 55)
	return broker.MessageSize(events.ToMessage(topic, e))
}

// Emit writes payload to the outbox in tx as a new event from source, on the
// topic events.Saga routes its type to. A cause with an id (the event being
// handled) makes the new event its consequence (events.Envelope.CausedBy);
// pass the zero Envelope for an event that starts something, such as
// OrderCreated. It fails when source is not the producer of payload's type:
// consumers would refuse the event (events.ErrUnexpectedSource).
func Emit(ctx context.Context, tx pgx.Tx, source string, cause events.Envelope, payload events.Payload) error {
	e, err := events.New(source, payload)
	if err != nil {
		return err
	}
	if cause.ID != "" {
		e = e.CausedBy(cause)
	}
	route, ok := events.RouteOf(e.Type)
	if !ok || route.Source != source {
		return fmt.Errorf("emit %s from %s: %w: its route is %+v", e.Type, source, events.ErrUnexpectedSource, route)
	}
	return Write(ctx, tx, route.Topic, e)
}
