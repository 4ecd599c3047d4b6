package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/database"
	"github.com/sagashop/sagashop/pkg/events"
)

// Order is a placed order as stored, with its items priced from the
// catalog and sorted by SKU.
type Order struct {
	ID         uuid.UUID     `db:"id"`
	CustomerID string        `db:"customer_id"`
	Email      string        `db:"email"`
	Status     Status        `db:"status"`
	Reason     string        `db:"reason"`
	TotalCents int64         `db:"total_cents"`
	Currency   string        `db:"currency"`
	CreatedAt  time.Time     `db:"created_at"`
	UpdatedAt  time.Time     `db:"updated_at"`
	Deadline   time.Time     `db:"deadline"`   // created_at + SAGA_DEADLINE
	ExpiredAt  *time.Time    `db:"expired_at"` // when the sweeper expired it; nil before
	Items      []events.Item `db:"-"`
}

const orderColumns = `id, customer_id, email, status, reason, total_cents, currency, created_at, updated_at, deadline, expired_at`

// selectOrder reads order id with its items. It fails with ErrNotFound.
func selectOrder(ctx context.Context, q database.Querier, id uuid.UUID) (Order, error) {
	o, err := database.QueryOne[Order](ctx, q, ErrNotFound, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id)
	if err != nil {
		return Order{}, fmt.Errorf("select order %s: %w", id, err)
	}
	rows, _ := q.Query(ctx, `SELECT sku, quantity, unit_price_cents FROM order_items WHERE order_id = $1 ORDER BY sku`, id)
	o.Items, err = pgx.CollectRows(rows, pgx.RowToStructByPos[events.Item])
	if err != nil {
		return Order{}, fmt.Errorf("select items of order %s: %w", id, err)
	}
	return o, nil
}

// lockOrder reads order id's status for update, so concurrent events for one
// order are decided one after the other. It fails with ErrNotFound.
func lockOrder(ctx context.Context, tx pgx.Tx, id uuid.UUID) (Order, error) {
	o, err := database.QueryOne[Order](ctx, tx, ErrNotFound, `SELECT `+orderColumns+` FROM orders WHERE id = $1 FOR UPDATE`, id)
	if err != nil {
		return Order{}, fmt.Errorf("lock order %s: %w", id, err)
	}
	return o, nil
}

// updateStatus sets the status and reason of order id and returns its new
// updated_at.
func updateStatus(ctx context.Context, tx pgx.Tx, id uuid.UUID, status Status, reason string) (time.Time, error) {
	var updated time.Time
	err := tx.QueryRow(ctx,
		`UPDATE orders SET status = $2, reason = $3, updated_at = now() WHERE id = $1 RETURNING updated_at`,
		id, status, reason).Scan(&updated)
	if err != nil {
		return time.Time{}, fmt.Errorf("set order %s to %s: %w", id, status, err)
	}
	return updated, nil
}

// insertOrder inserts o and its items in one statement (one round trip),
// with the deadline its creation time + sagaDeadline and the trace context
// traceparent, and returns its creation time and deadline.
func insertOrder(ctx context.Context, tx pgx.Tx, o Order, sagaDeadline time.Duration, traceparent string) (created, deadline time.Time, err error) {
	skus := make([]string, len(o.Items))
	quantities := make([]int32, len(o.Items))
	prices := make([]int64, len(o.Items))
	for i, it := range o.Items {
		skus[i], quantities[i], prices[i] = it.SKU, int32(it.Quantity), it.UnitPriceCents
	}
	err = tx.QueryRow(ctx,
		`WITH o AS (
		   INSERT INTO orders (id, customer_id, email, status, reason, total_cents, currency, deadline, traceparent)
		   VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $11::bigint * interval '1 microsecond', $12)
		   RETURNING id, created_at, deadline
		 ), items AS (
		   INSERT INTO order_items (order_id, sku, quantity, unit_price_cents)
		   SELECT o.id, i.sku, i.quantity, i.unit_price_cents
		   FROM o, unnest($8::text[], $9::integer[], $10::bigint[]) AS i (sku, quantity, unit_price_cents)
		 )
		 SELECT created_at, deadline FROM o`,
		o.ID, o.CustomerID, o.Email, o.Status, o.Reason, o.TotalCents, o.Currency, skus, quantities, prices,
		sagaDeadline.Microseconds(), traceparent).Scan(&created, &deadline)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	return created, deadline, nil
}

// expiry is an order the sweeper expired.
type expiry struct {
	ID          uuid.UUID
	CustomerID  string
	Deadline    time.Time
	CreatedAt   time.Time
	TraceParent string // of the request that placed the order; may be empty
}

// expireDue marks up to limit open orders past their deadline expired and
// returns them. Rows another transaction holds (a sweeper on another
// replica, an event handler deciding the order) are skipped, not waited
// for: the next sweep sees them again if they are still due. An order is
// expired once: a row another sweeper expired and committed no longer
// matches (expired_at IS NULL is checked again on the locked row).
func expireDue(ctx context.Context, tx pgx.Tx, limit int) ([]expiry, error) {
	rows, _ := tx.Query(ctx,
		`WITH due AS (
		   SELECT id FROM orders
		   WHERE expired_at IS NULL AND status IN ('PENDING', 'PAID', 'RESERVED') AND deadline <= now()
		   ORDER BY deadline
		   LIMIT $1
		   FOR UPDATE SKIP LOCKED
		 )
		 UPDATE orders SET expired_at = now()
		 FROM due WHERE orders.id = due.id
		 RETURNING orders.id, orders.customer_id, orders.deadline, orders.created_at, orders.traceparent`, limit)
	due, err := pgx.CollectRows(rows, pgx.RowToStructByPos[expiry])
	if err != nil {
		return nil, fmt.Errorf("expire orders past their deadline: %w", err)
	}
	return due, nil
}

// claimKey records key for order id and request hash. If the key is taken
// it returns false and the owner's hash and order; a concurrent claim of the
// same key waits here until the other transaction ends.
func claimKey(ctx context.Context, tx pgx.Tx, key, hash string, id uuid.UUID) (claimed bool, ownerHash string, ownerID uuid.UUID, err error) {
	tag, err := tx.Exec(ctx,
		`INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`,
		key, hash, id)
	if err != nil {
		return false, "", uuid.Nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return true, hash, id, nil
	}
	// Read committed: this statement sees the row that made the insert
	// do nothing, committed by the other transaction.
	err = tx.QueryRow(ctx, `SELECT request_hash, order_id FROM idempotency_keys WHERE key = $1`, key).Scan(&ownerHash, &ownerID)
	if err != nil {
		return false, "", uuid.Nil, fmt.Errorf("read idempotency key: %w", err)
	}
	return false, ownerHash, ownerID, nil
}

// selectPrices returns the catalog price of each of skus that is in the
// catalog.
func selectPrices(ctx context.Context, tx pgx.Tx, skus []string) (map[string]int64, error) {
	rows, _ := tx.Query(ctx, `SELECT sku, price_cents FROM products WHERE sku = ANY($1)`, skus)
	prices := make(map[string]int64, len(skus))
	var sku string
	var price int64
	_, err := pgx.ForEachRow(rows, []any{&sku, &price}, func() error {
		prices[sku] = price
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("select prices: %w", err)
	}
	return prices, nil
}

// upsertProduct writes p into the catalog copy unless the row was written
// by a later event (at). It reports whether it wrote.
func upsertProduct(ctx context.Context, tx pgx.Tx, p Product, at time.Time) (bool, error) {
	tag, err := tx.Exec(ctx,
		`INSERT INTO products (sku, name, price_cents, updated_at) VALUES ($1, $2, $3, $4)
		 ON CONFLICT (sku) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents, updated_at = excluded.updated_at
		 WHERE products.updated_at <= excluded.updated_at`,
		p.SKU, p.Name, p.PriceCents, at)
	if err != nil {
		return false, fmt.Errorf("upsert product %s: %w", p.SKU, err)
	}
	return tag.RowsAffected() == 1, nil
}
