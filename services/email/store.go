package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/database"
)

// lockOrder serializes the transactions touching one order's emails until
// tx ends. Without it, OrderShipped could record a pending email while a
// concurrent OrderCreated looks for pending emails and, not seeing the
// uncommitted row, leaves it pending for good.
func lockOrder(ctx context.Context, tx pgx.Tx, orderID uuid.UUID) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('email_' || current_schema() || '/' || $1::text, 0))`, orderID)
	if err != nil {
		return fmt.Errorf("lock order %s: %w", orderID, err)
	}
	return nil
}

func upsertRecipient(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, r Recipient) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO recipients (order_id, customer_id, email) VALUES ($1, $2, $3)
		ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, email = EXCLUDED.email`,
		orderID, r.CustomerID, r.Email)
	if err != nil {
		return fmt.Errorf("store recipient of %s: %w", orderID, err)
	}
	return nil
}

// getRecipient returns the recipient of an order, or ErrNotFound while
// OrderCreated has not arrived.
func getRecipient(ctx context.Context, q database.Querier, orderID uuid.UUID) (Recipient, error) {
	r, err := database.QueryOne[recipientRow](ctx, q, ErrNotFound,
		`SELECT customer_id, email FROM recipients WHERE order_id = $1`, orderID)
	if err != nil {
		return Recipient{}, fmt.Errorf("get recipient of %s: %w", orderID, err)
	}
	return Recipient{OrderID: orderID.String(), CustomerID: r.CustomerID, Email: r.Email}, nil
}

type recipientRow struct {
	CustomerID string `db:"customer_id"`
	Email      string `db:"email"`
}

// insertEmail records m as pending unless the order already has an email of
// its kind; inserted reports which.
func insertEmail(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, m Message) (inserted bool, err error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO emails (order_id, kind, subject, body) VALUES ($1, $2, $3, $4)
		ON CONFLICT (order_id, kind) DO NOTHING`,
		orderID, m.Kind, m.Subject, m.Body)
	if err != nil {
		return false, fmt.Errorf("record %s email of %s: %w", m.Kind, orderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

type messageRow struct {
	Kind    string `db:"kind"`
	Subject string `db:"subject"`
	Body    string `db:"body"`
}

// pendingEmails returns the order's emails still waiting for a recipient,
// oldest first.
func pendingEmails(ctx context.Context, tx pgx.Tx, orderID uuid.UUID) ([]Message, error) {
	rows, err := tx.Query(ctx, `
		SELECT kind, subject, body FROM emails
		WHERE order_id = $1 AND sent_at IS NULL
		ORDER BY created_at, kind`, orderID)
	if err != nil {
		return nil, fmt.Errorf("pending emails of %s: %w", orderID, err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[messageRow])
	if err != nil {
		return nil, fmt.Errorf("pending emails of %s: %w", orderID, err)
	}
	out := make([]Message, len(rs))
	for i, r := range rs {
		out[i] = Message(r)
	}
	return out, nil
}

// markSent records that the order's email of kind went to to. It fails
// when there is no pending email of that kind: the caller's transaction is
// then wrong about the state it holds locked.
func markSent(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, kind, to string) error {
	// clock_timestamp, not now(): emails sent together in one transaction
	// keep the order they were sent in.
	tag, err := tx.Exec(ctx, `
		UPDATE emails SET to_address = $3, sent_at = clock_timestamp()
		WHERE order_id = $1 AND kind = $2 AND sent_at IS NULL`,
		orderID, kind, to)
	if err != nil {
		return fmt.Errorf("mark %s email of %s sent: %w", kind, orderID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("mark %s email of %s sent: no pending email", kind, orderID)
	}
	return nil
}

type sentRow struct {
	OrderID uuid.UUID `db:"order_id"`
	Kind    string    `db:"kind"`
	To      string    `db:"to_address"`
	Subject string    `db:"subject"`
	SentAt  time.Time `db:"sent_at"`
}

// sentEmails returns the emails sent about an order, in the order they were
// sent.
func sentEmails(ctx context.Context, q database.Querier, orderID uuid.UUID) ([]SentEmail, error) {
	rows, err := q.Query(ctx, `
		SELECT order_id, kind, to_address, subject, sent_at FROM emails
		WHERE order_id = $1 AND sent_at IS NOT NULL
		ORDER BY sent_at, kind`, orderID)
	if err != nil {
		return nil, fmt.Errorf("sent emails of %s: %w", orderID, err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[sentRow])
	if err != nil {
		return nil, fmt.Errorf("sent emails of %s: %w", orderID, err)
	}
	out := make([]SentEmail, len(rs))
	for i, r := range rs {
		out[i] = SentEmail{OrderID: r.OrderID.String(), Kind: r.Kind, To: r.To, Subject: r.Subject, SentAt: r.SentAt}
	}
	return out, nil
}

func countPending(ctx context.Context, q database.Querier) (int64, error) {
	rows, err := q.Query(ctx, `SELECT count(*) FROM emails WHERE sent_at IS NULL`)
	if err != nil {
		return 0, fmt.Errorf("count pending emails: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("count pending emails: %w", err)
	}
	return n, nil
}
