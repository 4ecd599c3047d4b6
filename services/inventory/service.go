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
	"github.com/sagashop/sagashop/pkg/validation"
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

// versionedProduct is a product with its version (migration 00030): 1 when
// created, one more on every change of its row, reservations included. The
// HTTP API shows it as the ETag "<version>".
type versionedProduct struct {
	Product
	Version int64
}

// Errors of the product writes that say which version they read.
var (
	// ErrPreconditionFailed: If-Match names a version the product no
	// longer has (it changed since the client read it), or there is no
	// such product.
	ErrPreconditionFailed = errors.New("the product changed since it was read")
	// ErrPreconditionRequired: a PUT would set the available units of an
	// existing product to another number without If-Match, which would
	// overwrite whatever reservations and restocks happened since the
	// client read it.
	ErrPreconditionRequired = errors.New("changing the stock of a product needs If-Match")
)

// productChange is a PUT of a product: its SKU, name and price, and the
// available units, which may be left out (nil) to keep an existing
// product's stock. IfMatch, when set, says which versions the client read
// (the request's If-Match).
type productChange struct {
	SKU, Name  string
	PriceCents int64
	Available  *int
	IfMatch    func(version int64) bool
}

// saveProduct creates or replaces a product and emits ProductUpdated in the
// same transaction; created reports whether the product is new. Name and
// price are replaced at will. The available units of an existing product
// change only under If-Match (or to the number it already has), since a
// number computed from an earlier read would wipe out the reservations made
// since; a restock adds units without reading (restock). It fails with
// ErrInvalid for fields out of range or a new product without available,
// ErrPreconditionFailed and ErrPreconditionRequired.
func (s *service) saveProduct(ctx context.Context, c productChange) (out versionedProduct, created bool, err error) {
	available := 0
	if c.Available != nil {
		available = *c.Available
	}
	if err := ValidateProduct(c.Name, c.PriceCents, available); err != nil {
		return versionedProduct{}, false, err
	}
	p := Product{SKU: c.SKU, Name: c.Name, PriceCents: c.PriceCents, Available: available}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		created = false
		if c.IfMatch == nil && c.Available != nil {
			if out, created, err = insertProduct(ctx, tx, p); err != nil {
				return err
			}
		}
		if !created {
			cur, err := lockProduct(ctx, tx, c.SKU)
			switch {
			case errors.Is(err, ErrNotFound) && c.IfMatch != nil:
				return ErrPreconditionFailed
			case errors.Is(err, ErrNotFound):
				return validation.Fields{"available": "is required for a new product"}.Err()
			case err != nil:
				return err
			}
			if err := checkPrecondition(cur, c); err != nil {
				return err
			}
			if out, err = replaceProduct(ctx, tx, p, c.Available); err != nil {
				return err
			}
		}
		return outbox.Emit(ctx, tx, serviceName, events.Envelope{}, events.ProductUpdated{SKU: out.SKU, Name: out.Name, PriceCents: out.PriceCents})
	})
	if err != nil {
		return versionedProduct{}, false, fmt.Errorf("put product %s: %w", c.SKU, err)
	}
	return out, created, nil
}

// checkPrecondition says whether c may replace cur: under If-Match, if cur
// has a version c read; without, if c leaves the stock as it is.
func checkPrecondition(cur versionedProduct, c productChange) error {
	if c.IfMatch != nil {
		if !c.IfMatch(cur.Version) {
			return ErrPreconditionFailed
		}
		return nil
	}
	if c.Available != nil && *c.Available != cur.Available {
		return ErrPreconditionRequired
	}
	return nil
}

// putProduct creates p, or replaces it if that leaves its stock as it is
// (saveProduct without If-Match).
func (s *service) putProduct(ctx context.Context, p Product) (out Product, created bool, err error) {
	v, created, err := s.saveProduct(ctx, productChange{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Available: &p.Available})
	return v.Product, created, err
}

// restock adds qty units to the available stock of sku in one UPDATE, so
// it loses none of the reservations or releases made meanwhile. With
// ifMatch, only if the product still has a version the client read (a
// retried restock then cannot add twice). It emits nothing: ProductUpdated
// carries the catalog (name, price), not the stock. It fails with
// ErrInvalid for a quantity out of range or one that would take available
// past MaxAvailable, ErrNotFound and ErrPreconditionFailed.
func (s *service) restock(ctx context.Context, sku string, qty int, ifMatch func(version int64) bool) (out versionedProduct, err error) {
	if qty < 1 || qty > MaxAvailable {
		return versionedProduct{}, validation.Fields{"quantity": fmt.Sprintf("must be from 1 to %d", MaxAvailable)}.Err()
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if ifMatch != nil {
			cur, err := lockProduct(ctx, tx, sku)
			if errors.Is(err, ErrNotFound) {
				return ErrPreconditionFailed
			}
			if err != nil {
				return err
			}
			if !ifMatch(cur.Version) {
				return ErrPreconditionFailed
			}
		}
		out, err = restockProduct(ctx, tx, sku, qty)
		if !errors.Is(err, errTooMuchStock) {
			return err
		}
		if _, err := lockProduct(ctx, tx, sku); err != nil {
			return err // ErrNotFound
		}
		return validation.Fields{"quantity": fmt.Sprintf("would take available past %d", MaxAvailable)}.Err()
	})
	if err != nil {
		return versionedProduct{}, fmt.Errorf("restock %s: %w", sku, err)
	}
	return out, nil
}

// product returns a product, or ErrNotFound.
func (s *service) product(ctx context.Context, sku string) (Product, error) {
	p, err := getProduct(ctx, s.pool, sku)
	return p.Product, err
}

// productVersion returns a product with its version, or ErrNotFound.
func (s *service) productVersion(ctx context.Context, sku string) (versionedProduct, error) {
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
