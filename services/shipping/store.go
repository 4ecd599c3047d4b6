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

// insertShipment stores sh with the order's items unless a shipment for its
// order, or one with its tracking number, already exists; inserted reports
// which.
func insertShipment(ctx context.Context, tx pgx.Tx, sh Shipment, items []events.Item) (inserted bool, err error) {
	if items == nil {
		items = []events.Item{}
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO shipments (order_id, tracking_number, status, items)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`,
		sh.OrderID, sh.TrackingNumber, sh.Status, items)
	if err != nil {
		return false, fmt.Errorf("insert shipment %s: %w", sh.OrderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// insertTombstone records that the order will never ship, for reason,
// unless it has a shipment (or a tombstone) already; inserted reports
// which. A shipment of the same order being inserted meanwhile is waited
// for: the primary key decides which of the two the order gets.
func insertTombstone(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, reason string) (inserted bool, err error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO shipments (order_id, status, reason) VALUES ($1, $2, $3)
		ON CONFLICT (order_id) DO NOTHING`, orderID, StatusCancelled, reason)
	if err != nil {
		return false, fmt.Errorf("insert tombstone of %s: %w", orderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// shipmentStatus returns the status of the order's shipment or tombstone,
// "" if it has neither.
func shipmentStatus(ctx context.Context, tx pgx.Tx, orderID uuid.UUID) (string, error) {
	var status string
	err := tx.QueryRow(ctx, `SELECT coalesce((SELECT status FROM shipments WHERE order_id = $1), '')`, orderID).Scan(&status)
	if err != nil {
		return "", fmt.Errorf("look up shipment %s: %w", orderID, err)
	}
	return status, nil
}

type shipmentRow struct {
	OrderID        uuid.UUID `db:"order_id"`
	TrackingNumber string    `db:"tracking_number"`
	Status         string    `db:"status"`
	CreatedAt      time.Time `db:"created_at"`
}

// getShipment returns the shipment of an order, or ErrNotFound while it has
// not shipped, and for good when it never will (a tombstone).
func getShipment(ctx context.Context, q database.Querier, orderID uuid.UUID) (Shipment, error) {
	r, err := database.QueryOne[shipmentRow](ctx, q, ErrNotFound, `
		SELECT order_id, tracking_number, status, created_at
		FROM shipments WHERE order_id = $1 AND status = $2`, orderID, StatusShipped)
	if err != nil {
		return Shipment{}, fmt.Errorf("get shipment %s: %w", orderID, err)
	}
	return Shipment{OrderID: r.OrderID.String(), TrackingNumber: r.TrackingNumber, Status: r.Status, CreatedAt: r.CreatedAt}, nil
}
