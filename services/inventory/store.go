package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/database"
	"github.com/sagashop/sagashop/pkg/events"
)

type productRow struct {
	SKU        string    `db:"sku"`
	Name       string    `db:"name"`
	PriceCents int64     `db:"price_cents"`
	Available  int       `db:"available"`
	Reserved   int       `db:"reserved"`
	Version    int64     `db:"version"`
	CreatedAt  time.Time `db:"created_at"`
	UpdatedAt  time.Time `db:"updated_at"`
}

func (r productRow) product() Product {
	return Product{SKU: r.SKU, Name: r.Name, PriceCents: r.PriceCents, Available: r.Available, Reserved: r.Reserved}
}

func (r productRow) versioned() versionedProduct {
	return versionedProduct{Product: r.product(), Version: r.Version}
}

type reservationRow struct {
	OrderID   string        `db:"order_id"`
	Status    string        `db:"status"`
	Items     []events.Item `db:"items"`
	CreatedAt time.Time     `db:"created_at"`
	UpdatedAt time.Time     `db:"updated_at"`
}

func (r reservationRow) reservation() Reservation {
	return Reservation{OrderID: r.OrderID, Status: ReservationStatus(r.Status), Demand: demandOf(r.Items)}
}

const (
	productColumns     = `sku, name, price_cents, available, reserved, version, created_at, updated_at`
	reservationColumns = `order_id::text AS order_id, status, items, created_at, updated_at`
)

// insertProduct creates the product unless its SKU is taken; created
// reports which. It waits for a concurrent insert of the same SKU and then
// does nothing.
func insertProduct(ctx context.Context, tx pgx.Tx, p Product) (out versionedProduct, created bool, err error) {
	row, err := database.QueryOne[productRow](ctx, tx, errProductExists, `
		INSERT INTO products (sku, name, price_cents, available) VALUES ($1, $2, $3, $4)
		ON CONFLICT (sku) DO NOTHING
		RETURNING `+productColumns, p.SKU, p.Name, p.PriceCents, p.Available)
	if errors.Is(err, errProductExists) {
		return versionedProduct{}, false, nil
	}
	if err != nil {
		return versionedProduct{}, false, fmt.Errorf("insert product %s: %w", p.SKU, err)
	}
	return row.versioned(), true, nil
}

// errProductExists: the INSERT of insertProduct found the SKU taken.
var errProductExists = errors.New("product exists")

// lockProduct returns a product and locks its row until tx ends, or fails
// with ErrNotFound.
func lockProduct(ctx context.Context, tx pgx.Tx, sku string) (versionedProduct, error) {
	row, err := database.QueryOne[productRow](ctx, tx, ErrNotFound, `SELECT `+productColumns+` FROM products WHERE sku = $1 FOR UPDATE`, sku)
	if err != nil {
		return versionedProduct{}, fmt.Errorf("lock product %s: %w", sku, err)
	}
	return row.versioned(), nil
}

// replaceProduct sets the name and price of product p.SKU and, unless
// available is nil, its available units (reserved units stay as they
// are).
func replaceProduct(ctx context.Context, tx pgx.Tx, p Product, available *int) (versionedProduct, error) {
	row, err := database.QueryOne[productRow](ctx, tx, ErrNotFound, `
		UPDATE products SET name = $2, price_cents = $3, available = coalesce($4, available), updated_at = now()
		WHERE sku = $1
		RETURNING `+productColumns, p.SKU, p.Name, p.PriceCents, available)
	if err != nil {
		return versionedProduct{}, fmt.Errorf("replace product %s: %w", p.SKU, err)
	}
	return row.versioned(), nil
}

// restockProduct adds qty units to the available stock of sku, in one
// UPDATE, so units reserved or released meanwhile are never overwritten. It
// fails with ErrNotFound, or with errTooMuchStock when available would pass
// MaxAvailable.
func restockProduct(ctx context.Context, tx pgx.Tx, sku string, qty int) (versionedProduct, error) {
	row, err := database.QueryOne[productRow](ctx, tx, errTooMuchStock, `
		UPDATE products SET available = available + $2, updated_at = now()
		WHERE sku = $1 AND available + $2 <= $3
		RETURNING `+productColumns, sku, qty, MaxAvailable)
	if err != nil {
		return versionedProduct{}, fmt.Errorf("restock %d of %s: %w", qty, sku, err)
	}
	return row.versioned(), nil
}

// errTooMuchStock: restockProduct would take available past MaxAvailable.
var errTooMuchStock = errors.New("too much stock")

// getProduct returns a product, or ErrNotFound.
func getProduct(ctx context.Context, q database.Querier, sku string) (versionedProduct, error) {
	row, err := database.QueryOne[productRow](ctx, q, ErrNotFound, `SELECT `+productColumns+` FROM products WHERE sku = $1`, sku)
	if err != nil {
		return versionedProduct{}, fmt.Errorf("get product %s: %w", sku, err)
	}
	return row.versioned(), nil
}

// lockProducts returns the products among skus that exist, by SKU, and
// locks their rows until tx ends. Rows are locked in SKU order, the same in
// every transaction, so two reservations sharing products wait for each
// other instead of deadlocking.
func lockProducts(ctx context.Context, tx pgx.Tx, skus []string) (map[string]Product, error) {
	rows, err := tx.Query(ctx, `SELECT `+productColumns+` FROM products WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`, skus)
	if err != nil {
		return nil, fmt.Errorf("lock products: %w", err)
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByName[productRow])
	if err != nil {
		return nil, fmt.Errorf("lock products: %w", err)
	}
	out := make(map[string]Product, len(list))
	for _, r := range list {
		out[r.SKU] = r.product()
	}
	return out, nil
}

// reserveStock moves qty units of sku from available to reserved. The guard
// is in the UPDATE itself: it fails rather than oversell.
func reserveStock(ctx context.Context, tx pgx.Tx, sku string, qty int) error {
	tag, err := tx.Exec(ctx, `
		UPDATE products SET available = available - $1, reserved = reserved + $1, updated_at = now()
		WHERE sku = $2 AND available >= $1`, qty, sku)
	if err != nil {
		return fmt.Errorf("reserve %d of %s: %w", qty, sku, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("reserve %d of %s: not enough available", qty, sku)
	}
	return nil
}

// releaseStock removes qty shipped units of sku from reserved.
func releaseStock(ctx context.Context, tx pgx.Tx, sku string, qty int) error {
	tag, err := tx.Exec(ctx, `
		UPDATE products SET reserved = reserved - $1, updated_at = now()
		WHERE sku = $2 AND reserved >= $1`, qty, sku)
	if err != nil {
		return fmt.Errorf("release %d of %s: %w", qty, sku, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("release %d of %s: not that many reserved", qty, sku)
	}
	return nil
}

// returnStock gives qty units of sku held for a cancelled order back:
// reserved goes down, available up.
func returnStock(ctx context.Context, tx pgx.Tx, sku string, qty int) error {
	tag, err := tx.Exec(ctx, `
		UPDATE products SET available = available + $1, reserved = reserved - $1, updated_at = now()
		WHERE sku = $2 AND reserved >= $1`, qty, sku)
	if err != nil {
		return fmt.Errorf("return %d of %s: %w", qty, sku, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("return %d of %s: not that many reserved", qty, sku)
	}
	return nil
}

// getReservation returns the reservation of an order, or ErrNotFound.
// orderID must be a UUID.
func getReservation(ctx context.Context, q database.Querier, orderID string) (Reservation, error) {
	return queryReservation(ctx, q, `SELECT `+reservationColumns+` FROM reservations WHERE order_id = $1`, orderID)
}

// lockReservation is getReservation that also locks the row until tx ends.
func lockReservation(ctx context.Context, tx pgx.Tx, orderID string) (Reservation, error) {
	return queryReservation(ctx, tx, `SELECT `+reservationColumns+` FROM reservations WHERE order_id = $1 FOR UPDATE`, orderID)
}

func queryReservation(ctx context.Context, q database.Querier, sql, orderID string) (Reservation, error) {
	row, err := database.QueryOne[reservationRow](ctx, q, ErrNotFound, sql, orderID)
	if err != nil {
		return Reservation{}, fmt.Errorf("get reservation %s: %w", orderID, err)
	}
	return row.reservation(), nil
}

// insertReservation stores a new reservation with the order's items. One
// for the same order committed meanwhile makes it fail (primary key), and
// the use case with it.
func insertReservation(ctx context.Context, tx pgx.Tx, r Reservation, items []events.Item) error {
	if items == nil {
		items = []events.Item{}
	}
	_, err := tx.Exec(ctx, `INSERT INTO reservations (order_id, status, items) VALUES ($1, $2, $3)`,
		r.OrderID, string(r.Status), items)
	if err != nil {
		return fmt.Errorf("insert reservation %s: %w", r.OrderID, err)
	}
	return nil
}

// insertTombstone stores the tombstone of an order cancelled before it was
// reserved (a CANCELLED reservation of nothing) unless the order has a
// reservation already; inserted reports which. A reservation of the same
// order being inserted meanwhile is waited for.
func insertTombstone(ctx context.Context, tx pgx.Tx, orderID string) (inserted bool, err error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO reservations (order_id, status) VALUES ($1, $2)
		ON CONFLICT (order_id) DO NOTHING`, orderID, string(StatusCancelled))
	if err != nil {
		return false, fmt.Errorf("insert tombstone of %s: %w", orderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// setReservationStatus moves a reservation from one status to another; it
// fails if the reservation is not in from.
func setReservationStatus(ctx context.Context, tx pgx.Tx, orderID string, from, to ReservationStatus) error {
	tag, err := tx.Exec(ctx, `
		UPDATE reservations SET status = $1, updated_at = now()
		WHERE order_id = $2 AND status = $3`, string(to), orderID, string(from))
	if err != nil {
		return fmt.Errorf("set reservation %s %s: %w", orderID, to, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("set reservation %s %s: not %s", orderID, to, from)
	}
	return nil
}
