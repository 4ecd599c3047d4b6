package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// service holds the order use cases. Each runs in one transaction: its own
// (placeOrder, sweep) or the consumer's (the event handlers).
type service struct {
	pool     *pgxpool.Pool
	logger   *slog.Logger
	tracer   trace.Tracer
	metrics  *metrics
	deadline time.Duration // SAGA_DEADLINE: a new order's deadline is its creation + this
}

// metrics count orders placed (once their transaction has committed) and
// the saga's outcomes (after the consumer commits: consumer.AfterCommit), so
// a retried attempt never counts twice.
type metrics struct {
	ordersCreated prometheus.Counter
	ordersExpired prometheus.Counter
	sagaOrders    *prometheus.CounterVec
	sagaDuration  prometheus.Histogram
}

// newService returns the order service; a new order's deadline is its
// creation time + deadline (SAGA_DEADLINE, > 0). The sweeper's spans come
// from tp.
func newService(pool *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer, tp trace.TracerProvider, deadline time.Duration) (*service, error) {
	if deadline <= 0 {
		return nil, fmt.Errorf("order service: saga deadline %v, want > 0", deadline)
	}
	m := &metrics{
		ordersCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_created_total",
			Help: "Orders created (idempotent replays not counted).",
		}),
		ordersExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_expired_total",
			Help: "Orders the sweeper expired (each once): past their deadline before they ended, OrderExpired sent to shipping.",
		}),
		sagaOrders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_orders_total",
			Help: "Orders that reached a terminal state, by outcome (shipped, cancelled) and cancellation reason.",
		}, []string{"outcome", "reason"}),
		sagaDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "saga_duration_seconds",
			Help:    "Time from an order's creation to its terminal state.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60},
		}),
	}
	for _, c := range []prometheus.Collector{m.ordersCreated, m.ordersExpired, m.sagaOrders, m.sagaDuration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register order metrics: %w", err)
		}
	}
	// Show the expected series at zero from the start.
	m.sagaOrders.WithLabelValues("shipped", "")
	m.sagaOrders.WithLabelValues("cancelled", events.ReasonPaymentFailed)
	m.sagaOrders.WithLabelValues("cancelled", events.ReasonOutOfStock)
	m.sagaOrders.WithLabelValues("cancelled", events.ReasonTimedOut)
	return &service{pool: pool, logger: logger, tracer: tp.Tracer(serviceName), metrics: m, deadline: deadline}, nil
}

// placeOrder creates the order req asks for, priced from the catalog copy,
// with its deadline (creation + SAGA_DEADLINE), together with its
// OrderCreated event and, when key is set, the
// idempotency key: one transaction. A key already used for the same request
// returns that order with replayed set and creates nothing. It fails with a
// validation.Fields error (ErrInvalid) for SKUs not in the catalog or too large a
// total, and with ErrConflict for a key used for a different request.
func (s *service) placeOrder(ctx context.Context, key string, req NewOrder) (o Order, replayed bool, err error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Order{}, false, fmt.Errorf("new order id: %w", err)
	}
	// Tag the request's span and everything started under it (the queries
	// below) with the new order's id; a replay re-tags with the original.
	ctx = telemetry.ConcernsOrder(ctx, id.String())
	hash := req.Hash()
	placedBy := propagation.MapCarrier{} // the trace context the order's later events join
	telemetry.Propagator().Inject(ctx, placedBy)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		replayed = false
		if key != "" {
			claimed, ownerHash, ownerID, err := claimKey(ctx, tx, key, hash, id)
			if err != nil {
				return err
			}
			if !claimed {
				if ownerHash != hash {
					return ErrConflict
				}
				o, err = selectOrder(ctx, tx, ownerID)
				if errors.Is(err, ErrNotFound) {
					return fmt.Errorf("idempotency key %q names missing order %s", key, ownerID)
				}
				replayed = true
				return err
			}
		}
		skus := make([]string, len(req.Items))
		for i, it := range req.Items {
			skus[i] = it.SKU
		}
		prices, err := selectPrices(ctx, tx, skus)
		if err != nil {
			return err
		}
		total, err := Price(req.Items, prices)
		if err != nil {
			return err
		}
		o = Order{
			ID: id, CustomerID: req.CustomerID, Email: req.Email,
			Status: StatusPending, TotalCents: total, Currency: Currency, Items: pricedItems(req.Items, prices),
		}
		if o.CreatedAt, o.Deadline, err = insertOrder(ctx, tx, o, s.deadline, placedBy.Get("traceparent")); err != nil {
			return err
		}
		o.UpdatedAt = o.CreatedAt
		return outbox.Emit(ctx, tx, serviceName, events.Envelope{}, events.OrderCreated{
			OrderID: id.String(), CustomerID: o.CustomerID, Email: o.Email,
			Currency: o.Currency, TotalCents: o.TotalCents, Items: o.Items,
		})
	})
	if err != nil {
		return Order{}, false, fmt.Errorf("place order: %w", err)
	}
	if !replayed {
		s.metrics.ordersCreated.Inc()
	}
	return o, replayed, nil
}

// getOrder returns order id. It fails with ErrNotFound.
func (s *service) getOrder(ctx context.Context, id uuid.UUID) (Order, error) {
	return selectOrder(ctx, s.pool, id)
}

// advance moves order id to status to (with reason, for CANCELLED) because
// of event e, in the consumer's transaction tx, if the transition rules
// allow it; otherwise it does nothing, which makes a repeated or late event
// harmless. Cancelling emits OrderCancelled. It fails with ErrNotFound for
// an order this service never created.
func (s *service) advance(ctx context.Context, tx pgx.Tx, e events.Envelope, id uuid.UUID, to Status, reason string) error {
	o, err := lockOrder(ctx, tx, id)
	if err != nil {
		return err
	}
	switch d := Transition(o.Status, to, reason); d {
	case Advance:
	case Refused:
		s.logger.WarnContext(ctx, "event ignored: a reserved order is cancelled only when it times out",
			telemetry.LogEventType, e.Type, telemetry.LogStatus, o.Status, "requested", to, telemetry.LogReason, reason)
		return nil
	default:
		if o.Status == StatusCancelled && to == StatusShipped {
			// Shipping never ships an order it has a tombstone for, and
			// it records one before any ShipmentCancelled: this contradicts
			// the saga. The order stays as it is; someone must look.
			s.logger.ErrorContext(ctx, "order shipped after it was cancelled: left cancelled",
				telemetry.LogEventType, e.Type, telemetry.LogStatus, o.Status, telemetry.LogReason, o.Reason)
			return nil
		}
		s.logger.DebugContext(ctx, "event ignored: order already there or beyond",
			telemetry.LogEventType, e.Type, telemetry.LogStatus, o.Status, "requested", to, "decision", d.String())
		return nil
	}
	updated, err := updateStatus(ctx, tx, id, to, reason)
	if err != nil {
		return err
	}
	if to == StatusCancelled {
		cancelled := events.OrderCancelled{OrderID: id.String(), CustomerID: o.CustomerID, Reason: reason}
		if err := outbox.Emit(ctx, tx, serviceName, e, cancelled); err != nil {
			return err
		}
	}
	if to.Terminal() {
		// Observed once the consumer's transaction commits: an attempt
		// that rolls back (to be retried) observes nothing, and a repeated
		// or late event has returned above, so each order counts once.
		elapsed := updated.Sub(o.CreatedAt)
		consumer.AfterCommit(ctx, func() {
			s.metrics.sagaOrders.WithLabelValues(SagaOutcome(to), reason).Inc()
			s.metrics.sagaDuration.Observe(elapsed.Seconds())
		})
	}
	s.logger.InfoContext(ctx, "order status changed", "from", o.Status, "to", to, telemetry.LogReason, reason, telemetry.LogEventType, e.Type)
	return nil
}

// sweepBatch is how many orders one sweep expires at most (one transaction).
const sweepBatch = 100

// sweepInterval is how often the sweeper looks for orders past their
// deadline: a tenth of the deadline, at least 1s and at most 5s, so an order
// is expired at most a few seconds (and a small part of its deadline) late.
func sweepInterval(deadline time.Duration) time.Duration {
	return min(max(deadline/10, time.Second), 5*time.Second)
}

// sweeper expires the orders past their deadline every sweepInterval until
// ctx ends (a platform.Parts worker). A sweep that fails (the database away
// for a moment) is logged and tried again at the next tick: it is not a
// reason to stop the service. A full batch is followed by another sweep at
// once.
func (s *service) sweeper(ctx context.Context) error {
	tick := time.NewTicker(sweepInterval(s.deadline))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for {
			n, err := s.sweep(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				s.logger.WarnContext(ctx, "sweep failed, trying again at the next tick", telemetry.Err(err))
				break
			}
			if n < sweepBatch {
				break
			}
		}
	}
}

// sweep marks up to sweepBatch open orders past their deadline expired and
// emits an OrderExpired for each, in one transaction: shipping, the saga's
// pivot, answers (ShipmentCancelled, or nothing because it shipped). The
// order keeps its status until then. Several sweepers (one per replica)
// never expire an order twice: each skips the rows another holds. It
// returns how many orders it expired.
func (s *service) sweep(ctx context.Context) (int, error) {
	var due []expiry
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if due, err = expireDue(ctx, tx, sweepBatch); err != nil {
			return err
		}
		for _, o := range due {
			if err := s.emitExpired(ctx, tx, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	s.metrics.ordersExpired.Add(float64(len(due)))
	for _, o := range due {
		s.logger.InfoContext(telemetry.ConcernsOrder(ctx, o.ID.String()), "order expired: deadline passed, shipping asked to decide",
			"deadline", o.Deadline.UTC(), "age", time.Since(o.CreatedAt).Round(time.Millisecond).String(), telemetry.LogCustomerID, o.CustomerID)
	}
	return len(due), nil
}

// emitExpired writes the OrderExpired of o in tx, in a span of the order's
// own trace (the one its POST /orders started), so that the deadline's
// events, shipping's answer and the compensations join it.
func (s *service) emitExpired(ctx context.Context, tx pgx.Tx, o expiry) error {
	ctx = telemetry.Propagator().Extract(ctx, propagation.MapCarrier{"traceparent": o.TraceParent})
	ctx = telemetry.ConcernsOrder(ctx, o.ID.String())
	ctx, span := s.tracer.Start(ctx, "expire order", trace.WithAttributes(attribute.String("order.deadline", o.Deadline.UTC().Format(time.RFC3339Nano))))
	defer span.End()
	expired := events.OrderExpired{OrderID: o.ID.String(), CustomerID: o.CustomerID, Deadline: o.Deadline.UTC()}
	return outbox.Emit(ctx, tx, serviceName, events.Envelope{}, expired)
}

// updateProduct writes p, from event e, into the catalog copy, unless a
// later event already did.
func (s *service) updateProduct(ctx context.Context, tx pgx.Tx, e events.Envelope, p Product) error {
	at := e.Time
	if at.IsZero() {
		at = time.Now()
	}
	wrote, err := upsertProduct(ctx, tx, p, at)
	if err != nil {
		return err
	}
	if !wrote {
		s.logger.DebugContext(ctx, "product update ignored: a later one is stored", telemetry.LogSKU, p.SKU)
		return nil
	}
	s.logger.InfoContext(ctx, "product updated", telemetry.LogSKU, p.SKU, "price_cents", p.PriceCents)
	return nil
}

// pricedItems returns the order's lines at their catalog prices (Price has
// checked that every SKU is in prices), sorted by SKU: the items as stored,
// answered and carried by OrderCreated.
func pricedItems(lines []LineItem, prices map[string]int64) []events.Item {
	items := make([]events.Item, len(lines))
	for i, l := range lines {
		items[i] = events.Item{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: prices[l.SKU]}
	}
	slices.SortFunc(items, func(a, b events.Item) int { return strings.Compare(a.SKU, b.SKU) })
	return items
}
