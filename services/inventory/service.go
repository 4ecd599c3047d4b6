package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// service holds the inventory use cases. Each one is one transaction: the
// HTTP ones open it on the pool; the event handlers run in the consumer's,
// which also records the event in the inbox.
type service struct {
	pool    *pgxpool.Pool
	logger  *slog.Logger
	metrics metrics
}

// metrics count the outcomes of the use cases, once their transaction has
// committed (consumer.AfterCommit), so a retried attempt never counts twice.
type metrics struct {
	reservations *prometheus.CounterVec // by outcome: reserved, unavailable, refused
	released     *prometheus.CounterVec // by the cancellation's reason
}

func newService(pool *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer) (*service, error) {
	m := metrics{
		reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reservations_total", Help: "Reservations of paid orders by outcome (reserved, unavailable, or refused: the order was cancelled before).",
		}, []string{"outcome"}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reservations_released_total", Help: "Reservations released, their units back to available, because their order was cancelled; by the cancellation's reason.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.reservations, m.released} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register inventory metrics: %w", err)
		}
	}
	// Show the expected series at zero from the start.
	for _, outcome := range []string{"reserved", "unavailable", "refused"} {
		m.reservations.WithLabelValues(outcome)
	}
	m.released.WithLabelValues(events.ReasonTimedOut)
	return &service{pool: pool, logger: logger, metrics: m}, nil
}

// putProduct creates or replaces a product (name, price and available
// units; reserved units are untouched) and emits ProductUpdated in the same
// transaction. created reports whether the product is new. It fails with
// ErrInvalid for fields out of range.
func (s *service) putProduct(ctx context.Context, p Product) (out Product, created bool, err error) {
	if err := ValidateProduct(p.Name, p.PriceCents, p.Available); err != nil {
		return Product{}, false, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out, created, err = putProduct(ctx, tx, p)
		if err != nil {
			return err
		}
		return outbox.Emit(ctx, tx, serviceName, events.Envelope{}, events.ProductUpdated{SKU: out.SKU, Name: out.Name, PriceCents: out.PriceCents})
	})
	if err != nil {
		return Product{}, false, fmt.Errorf("put product %s: %w", p.SKU, err)
	}
	return out, created, nil
}

// product returns a product, or ErrNotFound.
func (s *service) product(ctx context.Context, sku string) (Product, error) {
	return getProduct(ctx, s.pool, sku)
}

// reserve reserves every item of a paid order, or none, in tx, on
// PaymentProcessed: InventoryReserved when all are available,
// InventoryUnavailable with the missing SKUs otherwise. An order that
// already has a reservation is left alone; one that was cancelled before
// (a tombstone) reserves nothing and emits nothing: payment refunds it on
// the same OrderCancelled.
func (s *service) reserve(ctx context.Context, tx pgx.Tx, cause events.Envelope, paid events.PaymentProcessed) error {
	// Two deliveries of the same order racing here both find no
	// reservation; the second one's insert then waits on the primary key
	// and fails when the first commits, rolling back its stock changes, and
	// its retry finds the reservation. The same goes for a reservation
	// racing the tombstone of cancelReservation.
	existing, err := getReservation(ctx, tx, paid.OrderID)
	switch {
	case err == nil && existing.Status == StatusCancelled:
		consumer.AfterCommit(ctx, func() { s.metrics.reservations.WithLabelValues("refused").Inc() })
		s.logger.InfoContext(ctx, "order already cancelled, nothing reserved", "items", len(paid.Items))
		return nil
	case err == nil:
		s.logger.InfoContext(ctx, "order already has a reservation, event ignored", telemetry.LogStatus, existing.Status)
		return nil
	case !errors.Is(err, ErrNotFound):
		return err
	}

	demand := demandOf(paid.Items)
	stock, err := lockProducts(ctx, tx, demand.SKUs())
	if err != nil {
		return err
	}
	r := Reserve(paid.OrderID, demand, stock)
	if r.Status == StatusReserved {
		for _, sku := range demand.SKUs() {
			if err := reserveStock(ctx, tx, sku, demand.Units(sku)); err != nil {
				return err
			}
		}
	}
	if err := insertReservation(ctx, tx, r, paid.Items); err != nil {
		return err
	}

	var payload events.Payload = events.InventoryReserved{OrderID: paid.OrderID, Items: paid.Items}
	outcome := "reserved"
	if r.Status == StatusRejected {
		payload = events.InventoryUnavailable{OrderID: paid.OrderID, MissingSKUs: r.MissingSKUs}
		outcome = "unavailable"
	}
	if err := outbox.Emit(ctx, tx, serviceName, cause, payload); err != nil {
		return err
	}
	consumer.AfterCommit(ctx, func() { s.metrics.reservations.WithLabelValues(outcome).Inc() })
	if r.Status == StatusReserved {
		s.logger.InfoContext(ctx, "inventory reserved", "items", len(paid.Items))
	} else {
		s.logger.InfoContext(ctx, "inventory unavailable", "missing_skus", r.MissingSKUs)
	}
	return nil
}

// releaseReservation releases an order's reserved units in tx, on
// OrderShipped: they left the warehouse, so reserved goes down and
// available stays. A reservation already shipped, a rejected one or none
// at all holds nothing and is left alone.
func (s *service) releaseReservation(ctx context.Context, tx pgx.Tx, shipped events.OrderShipped) error {
	r, err := lockReservation(ctx, tx, shipped.OrderID)
	if errors.Is(err, ErrNotFound) {
		s.logger.WarnContext(ctx, "no reservation to release, event ignored")
		return nil
	}
	if err != nil {
		return err
	}
	next, err := r.Ship()
	switch {
	case errors.Is(err, ErrAlreadyShipped):
		s.logger.InfoContext(ctx, "reservation already released, event ignored")
		return nil
	case errors.Is(err, ErrNotReserved):
		s.logger.WarnContext(ctx, "shipped order has no reserved stock, event ignored", telemetry.LogStatus, r.Status)
		return nil
	case errors.Is(err, ErrCancelled):
		// Shipping never ships an order it was told was cancelled: this
		// contradicts the protocol, and releasing twice would sell stock
		// that left.
		s.logger.ErrorContext(ctx, "cancelled order shipped, its stock is left as it is", telemetry.LogStatus, r.Status,
			"tracking_number", shipped.TrackingNumber)
		return nil
	case err != nil:
		return err
	}
	if err := setReservationStatus(ctx, tx, r.OrderID, r.Status, next.Status); err != nil {
		return err
	}
	// Same SKU order as reserve, so the two never deadlock.
	for _, sku := range r.Demand.SKUs() {
		if err := releaseStock(ctx, tx, sku, r.Demand.Units(sku)); err != nil {
			return err
		}
	}
	s.logger.InfoContext(ctx, "reservation released", "tracking_number", shipped.TrackingNumber)
	return nil
}

// cancelReservation undoes what inventory holds for a cancelled order, in
// tx, on OrderCancelled (any reason): a reservation not yet shipped is
// released (its units go from reserved back to available, the reservation
// RELEASED); an order without a reservation gets a tombstone, so that a
// late PaymentProcessed (it travels on another topic, so it may come
// second) reserves nothing. A rejected, released or shipped reservation
// holds nothing and is left alone. It emits nothing: no one reads it.
func (s *service) cancelReservation(ctx context.Context, tx pgx.Tx, c events.OrderCancelled) error {
	r, err := lockReservation(ctx, tx, c.OrderID)
	if errors.Is(err, ErrNotFound) {
		// A reservation of the order running at the same time waits on
		// this insert, or this insert on its: whichever commits first
		// holds the primary key.
		inserted, err := insertTombstone(ctx, tx, c.OrderID)
		if err != nil {
			return err
		}
		if inserted {
			s.logger.InfoContext(ctx, "order cancelled before it was reserved, tombstone recorded", telemetry.LogReason, c.Reason)
			return nil
		}
		s.logger.InfoContext(ctx, "order reserved meanwhile, releasing it")
		r, err = lockReservation(ctx, tx, c.OrderID)
	}
	if err != nil {
		return err
	}
	next, err := r.Release()
	switch {
	case errors.Is(err, ErrCancelled):
		s.logger.InfoContext(ctx, "reservation already released, event ignored", telemetry.LogStatus, r.Status)
		return nil
	case errors.Is(err, ErrNotReserved):
		s.logger.InfoContext(ctx, "nothing reserved, nothing to release", telemetry.LogStatus, r.Status)
		return nil
	case errors.Is(err, ErrAlreadyShipped):
		// Shipping is the saga's pivot: an order that shipped is never
		// cancelled. The units left the warehouse; they cannot come back.
		s.logger.ErrorContext(ctx, "shipped order cancelled, its stock is left as it is", telemetry.LogReason, c.Reason)
		return nil
	case err != nil:
		return err
	}
	if err := setReservationStatus(ctx, tx, r.OrderID, r.Status, next.Status); err != nil {
		return err
	}
	// Same SKU order as reserve, so the two never deadlock.
	for _, sku := range r.Demand.SKUs() {
		if err := returnStock(ctx, tx, sku, r.Demand.Units(sku)); err != nil {
			return err
		}
	}
	consumer.AfterCommit(ctx, func() { s.metrics.released.WithLabelValues(c.Reason).Inc() })
	s.logger.InfoContext(ctx, "reservation released, stock back to available", telemetry.LogReason, c.Reason)
	return nil
}

// demandOf returns what the lines of an order ask of the stock.
func demandOf(items []events.Item) Demand {
	var d Demand
	for _, it := range items {
		d.Add(it.SKU, it.Quantity)
	}
	return d
}
