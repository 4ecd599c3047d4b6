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
	CreatedAt      time.Time `db:"created_at"`
}

// getShipment returns the shipment of an order, or ErrNotFound.
func getShipment(ctx context.Context, q database.Querier, orderID uuid.UUID) (Shipment, error) {
	r, err := database.QueryOne[shipmentRow](ctx, q, ErrNotFound, `
		SELECT order_id, tracking_number, status, created_at
		FROM shipments WHERE order_id = $1`, orderID)
	if err != nil {
		return Shipment{}, fmt.Errorf("get shipment %s: %w", orderID, err)
	}
	return Shipment{OrderID: r.OrderID.String(), TrackingNumber: r.TrackingNumber, Status: r.Status, CreatedAt: r.CreatedAt}, nil
}
