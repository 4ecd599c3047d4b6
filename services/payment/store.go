package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/database"
	"github.com/sagashop/sagashop/pkg/events"
)

type accountRow struct {
	CustomerID   string    `db:"customer_id"`
	BalanceCents int64     `db:"balance_cents"`
	CreatedAt    time.Time `db:"created_at"`
	UpdatedAt    time.Time `db:"updated_at"`
}

type paymentRow struct {
	OrderID     string    `db:"order_id"`
	CustomerID  string    `db:"customer_id"`
	AmountCents int64     `db:"amount_cents"`
	Status      string    `db:"status"`
	CreatedAt   time.Time `db:"created_at"`
	UpdatedAt   time.Time `db:"updated_at"`
}

func (r paymentRow) payment() Payment {
	return Payment{OrderID: r.OrderID, CustomerID: r.CustomerID, AmountCents: r.AmountCents, Status: Status(r.Status)}
}

const paymentColumns = `order_id::text AS order_id, customer_id, amount_cents, status, created_at, updated_at`

// addDeposit records a deposit and adds it to the balance, opening the
// account on the first one. It returns the account as it is afterwards and
// the deposit's id.
func addDeposit(ctx context.Context, tx pgx.Tx, customerID string, amountCents int64) (Account, int64, error) {
	rows, err := tx.Query(ctx, `
		INSERT INTO accounts (customer_id, balance_cents) VALUES ($1, $2)
		ON CONFLICT (customer_id) DO UPDATE
		SET balance_cents = accounts.balance_cents + EXCLUDED.balance_cents, updated_at = now()
		RETURNING customer_id, balance_cents, created_at, updated_at`, customerID, amountCents)
	if err != nil {
		return Account{}, 0, fmt.Errorf("credit account %s: %w", customerID, err)
	}
	row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[accountRow])
	if err != nil {
		return Account{}, 0, fmt.Errorf("credit account %s: %w", customerID, err)
	}
	var id int64
	err = tx.QueryRow(ctx, `INSERT INTO deposits (customer_id, amount_cents, balance_after_cents) VALUES ($1, $2, $3) RETURNING id`,
		customerID, amountCents, row.BalanceCents).Scan(&id)
	if err != nil {
		return Account{}, 0, fmt.Errorf("record deposit for %s: %w", customerID, err)
	}
	return Account{CustomerID: row.CustomerID, BalanceCents: row.BalanceCents}, id, nil
}

// claimDepositKey records key, for a deposit request of hash, before the
// deposit is made. If the key is taken it returns false, the owner's hash
// and the account as the owner's deposit left it; a concurrent claim of the
// same key waits here until the other transaction ends.
func claimDepositKey(ctx context.Context, tx pgx.Tx, key, hash string) (claimed bool, ownerHash string, owner Account, err error) {
	tag, err := tx.Exec(ctx,
		`INSERT INTO deposit_idempotency_keys (key, request_hash) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, hash)
	if err != nil {
		return false, "", Account{}, fmt.Errorf("claim idempotency key: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return true, hash, Account{}, nil
	}
	// Read committed: this statement sees the row that made the insert do
	// nothing, committed by the other transaction with its deposit.
	var customerID *string
	var balance *int64
	err = tx.QueryRow(ctx, `
		SELECT k.request_hash, d.customer_id, d.balance_after_cents
		FROM deposit_idempotency_keys k LEFT JOIN deposits d ON d.id = k.deposit_id
		WHERE k.key = $1`, key).Scan(&ownerHash, &customerID, &balance)
	if err != nil {
		return false, "", Account{}, fmt.Errorf("read idempotency key: %w", err)
	}
	if customerID == nil || balance == nil {
		return false, "", Account{}, fmt.Errorf("idempotency key %q has no deposit", key)
	}
	return false, ownerHash, Account{CustomerID: *customerID, BalanceCents: *balance}, nil
}

// setDepositKey ties key, claimed in tx, to the deposit it was made with.
func setDepositKey(ctx context.Context, tx pgx.Tx, key string, depositID int64) error {
	if _, err := tx.Exec(ctx, `UPDATE deposit_idempotency_keys SET deposit_id = $2 WHERE key = $1`, key, depositID); err != nil {
		return fmt.Errorf("record idempotency key: %w", err)
	}
	return nil
}

// getAccount returns a customer's account, or ErrNotFound.
func getAccount(ctx context.Context, q database.Querier, customerID string) (Account, error) {
	row, err := database.QueryOne[accountRow](ctx, q, ErrNotFound,
		`SELECT customer_id, balance_cents, created_at, updated_at FROM accounts WHERE customer_id = $1`, customerID)
	if err != nil {
		return Account{}, fmt.Errorf("get account %s: %w", customerID, err)
	}
	return Account{CustomerID: row.CustomerID, BalanceCents: row.BalanceCents}, nil
}

// debitAccount takes amountCents from the customer's balance if it covers
// it, and reports whether it did. The guard is in the UPDATE itself, so
// concurrent debits can never overdraw (and the CHECK backs it up).
func debitAccount(ctx context.Context, tx pgx.Tx, customerID string, amountCents int64) (bool, error) {
	tag, err := tx.Exec(ctx, `
		UPDATE accounts SET balance_cents = balance_cents - $1, updated_at = now()
		WHERE customer_id = $2 AND balance_cents >= $1`, amountCents, customerID)
	if err != nil {
		return false, fmt.Errorf("debit account %s: %w", customerID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// creditAccount gives amountCents back to the customer's balance and
// reports whether the account exists.
func creditAccount(ctx context.Context, tx pgx.Tx, customerID string, amountCents int64) (bool, error) {
	tag, err := tx.Exec(ctx, `
		UPDATE accounts SET balance_cents = balance_cents + $1, updated_at = now()
		WHERE customer_id = $2`, amountCents, customerID)
	if err != nil {
		return false, fmt.Errorf("credit account %s: %w", customerID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// getPayment returns the payment of an order, or ErrNotFound. orderID must
// be a UUID.
func getPayment(ctx context.Context, q database.Querier, orderID string) (Payment, error) {
	return queryPayment(ctx, q, `SELECT `+paymentColumns+` FROM payments WHERE order_id = $1`, orderID)
}

// lockPayment is getPayment that also locks the row until tx ends.
func lockPayment(ctx context.Context, tx pgx.Tx, orderID string) (Payment, error) {
	return queryPayment(ctx, tx, `SELECT `+paymentColumns+` FROM payments WHERE order_id = $1 FOR UPDATE`, orderID)
}

func queryPayment(ctx context.Context, q database.Querier, sql, orderID string) (Payment, error) {
	row, err := database.QueryOne[paymentRow](ctx, q, ErrNotFound, sql, orderID)
	if err != nil {
		return Payment{}, fmt.Errorf("get payment %s: %w", orderID, err)
	}
	return row.payment(), nil
}

// insertPayment stores a new payment with the order's items. A payment for
// the same order committed meanwhile makes it fail (primary key), and the
// whole use case with it.
func insertPayment(ctx context.Context, tx pgx.Tx, p Payment, items []events.Item) error {
	if items == nil {
		items = []events.Item{}
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO payments (order_id, customer_id, amount_cents, status, items)
		VALUES ($1, $2, $3, $4, $5)`, p.OrderID, p.CustomerID, p.AmountCents, string(p.Status), items)
	if err != nil {
		return fmt.Errorf("insert payment %s: %w", p.OrderID, err)
	}
	return nil
}

// insertTombstone stores p, the tombstone of a cancelled order, unless the
// order has a payment already; inserted reports which. A payment of the
// same order being inserted meanwhile is waited for.
func insertTombstone(ctx context.Context, tx pgx.Tx, p Payment) (inserted bool, err error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO payments (order_id, customer_id, amount_cents, status)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (order_id) DO NOTHING`, p.OrderID, p.CustomerID, p.AmountCents, string(p.Status))
	if err != nil {
		return false, fmt.Errorf("insert tombstone of %s: %w", p.OrderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// setPaymentStatus moves a payment from one status to another; it fails if
// the payment is not in from.
func setPaymentStatus(ctx context.Context, tx pgx.Tx, orderID string, from, to Status) error {
	tag, err := tx.Exec(ctx, `
		UPDATE payments SET status = $1, updated_at = now()
		WHERE order_id = $2 AND status = $3`, string(to), orderID, string(from))
	if err != nil {
		return fmt.Errorf("set payment %s %s: %w", orderID, to, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("set payment %s %s: not %s", orderID, to, from)
	}
	return nil
}
