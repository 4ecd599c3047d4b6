package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// querier is what reads need: a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// insertShipment stores sh unless a shipment for its order, or one with its
// tracking number, already exists; inserted reports which.
func insertShipment(ctx context.Context, tx pgx.Tx, sh Shipment) (inserted bool, err error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO shipments (order_id, tracking_number, status, items)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`,
		sh.OrderID, sh.TrackingNumber, sh.Status, sh.Items)
	if err != nil {
		return false, fmt.Errorf("insert shipment %s: %w", sh.OrderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

func shipmentExists(ctx context.Context, tx pgx.Tx, orderID uuid.UUID) (bool, error) {
	var exists bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM shipments WHERE order_id = $1)`, orderID).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("look up shipment %s: %w", orderID, err)
	}
	return exists, nil
}

type shipmentRow struct {
	OrderID        uuid.UUID `db:"order_id"`
	TrackingNumber string    `db:"tracking_number"`
	Status         string    `db:"status"`
	Items          []Item    `db:"items"`
	CreatedAt      time.Time `db:"created_at"`
}

// getShipment returns the shipment of an order, or ErrNotFound.
func getShipment(ctx context.Context, q querier, orderID uuid.UUID) (Shipment, error) {
	rows, err := q.Query(ctx, `
		SELECT order_id, tracking_number, status, items, created_at
		FROM shipments WHERE order_id = $1`, orderID)
	if err != nil {
		return Shipment{}, fmt.Errorf("get shipment %s: %w", orderID, err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[shipmentRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return Shipment{}, ErrNotFound
	}
	if err != nil {
		return Shipment{}, fmt.Errorf("get shipment %s: %w", orderID, err)
	}
	return Shipment{
		OrderID:        r.OrderID.String(),
		TrackingNumber: r.TrackingNumber,
		Status:         r.Status,
		Items:          r.Items,
		CreatedAt:      r.CreatedAt,
	}, nil
}
