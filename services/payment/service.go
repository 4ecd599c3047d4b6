package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/telemetry"
)

// service holds the payment use cases. Each one is one transaction: the
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
	payments *prometheus.CounterVec // by status: CHARGED, FAILED
	refunds  *prometheus.CounterVec // by reason: out_of_stock, or the cancellation's
	refused  prometheus.Counter     // OrderCreated of an order already cancelled
}

func newService(pool *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer) (*service, error) {
	m := metrics{
		payments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "payments_total", Help: "Payments of orders by outcome (CHARGED or FAILED).",
		}, []string{"status"}),
		refunds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refunds_total", Help: "Charges refunded, by reason: out_of_stock (inventory could not reserve the order) or the reason the order was cancelled for.",
		}, []string{"reason"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "charges_refused_total", Help: "OrderCreated events of orders already cancelled: nothing charged.",
		}),
	}
	for _, c := range []prometheus.Collector{m.payments, m.refunds, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register payment metrics: %w", err)
		}
	}
	// Show the expected series at zero from the start.
	for _, reason := range []string{events.ReasonOutOfStock, events.ReasonTimedOut} {
		m.refunds.WithLabelValues(reason)
	}
	return &service{pool: pool, logger: logger, metrics: m}, nil
}

// deposit adds amountCents to a customer's balance, opening the account on
// the first deposit. It fails with ErrInvalid for an amount out of range.
func (s *service) deposit(ctx context.Context, customerID string, amountCents int64) (Account, error) {
	acc, _, err := s.depositOnce(ctx, "", customerID, amountCents)
	return acc, err
}

// ErrKeyReused: an Idempotency-Key already used for a different request.
var ErrKeyReused = errors.New("idempotency key reused")

// depositOnce is deposit with an Idempotency-Key (none when key is ""): the
// key, a hash of the request and the deposit commit together, so a key
// already used for the same request returns the account as that deposit
// left it, with replayed set, and credits nothing; concurrent requests with
// one key credit once. It fails with ErrInvalid for an amount out of range
// and with ErrKeyReused for a key used for a different request (another
// account or amount).
func (s *service) depositOnce(ctx context.Context, key, customerID string, amountCents int64) (acc Account, replayed bool, err error) {
	if err := ValidateDeposit(amountCents); err != nil {
		return Account{}, false, err
	}
	hash := depositHash(customerID, amountCents)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		replayed = false
		if key != "" {
			claimed, ownerHash, owner, err := claimDepositKey(ctx, tx, key, hash)
			if err != nil {
				return err
			}
			if !claimed {
				if ownerHash != hash {
					return ErrKeyReused
				}
				acc, replayed = owner, true
				return nil
			}
		}
		var id int64
		if acc, id, err = addDeposit(ctx, tx, customerID, amountCents); err != nil {
			return err
		}
		if key != "" {
			return setDepositKey(ctx, tx, key, id)
		}
		return nil
	})
	if err != nil {
		return Account{}, false, fmt.Errorf("deposit for %s: %w", customerID, err)
	}
	return acc, replayed, nil
}

// depositHash identifies a deposit request: the same account and amount.
func depositHash(customerID string, amountCents int64) string {
	sum := sha256.Sum256([]byte(customerID + "\n" + strconv.FormatInt(amountCents, 10)))
	return hex.EncodeToString(sum[:])
}

// account returns a customer's account, or ErrNotFound.
func (s *service) account(ctx context.Context, customerID string) (Account, error) {
	return getAccount(ctx, s.pool, customerID)
}

// payment returns the payment of an order (orderID a UUID), or ErrNotFound.
func (s *service) payment(ctx context.Context, orderID string) (Payment, error) {
	return getPayment(ctx, s.pool, orderID)
}

// charge charges an order's total to its customer in tx, on OrderCreated:
// PaymentProcessed if the balance covers it, PaymentFailed if not (an
// unknown customer has a balance of 0). An order that already has a
// payment is left alone; one that was cancelled before (its payment is a
// tombstone, CANCELLED) is charged nothing. It fails with ErrInvalid for a
// negative total.
func (s *service) charge(ctx context.Context, tx pgx.Tx, cause events.Envelope, o events.OrderCreated) error {
	if err := ValidateCharge(o.CustomerID, o.TotalCents); err != nil {
		return fmt.Errorf("charge order %s: %w", o.OrderID, err)
	}
	// Two deliveries of the same order racing here both find no payment;
	// the second one's insert then waits on the primary key and fails when
	// the first commits, rolling back its debit, and its retry finds the
	// payment. The same goes for a charge racing the tombstone of
	// cancelPayment: one of the two inserts wins, the other's retry sees it.
	existing, err := getPayment(ctx, tx, o.OrderID)
	switch {
	case err == nil && existing.Status == StatusCancelled:
		consumer.AfterCommit(ctx, s.metrics.refused.Inc)
		s.logger.InfoContext(ctx, "order already cancelled, nothing charged", telemetry.LogCustomerID, o.CustomerID, "amount_cents", o.TotalCents)
		return nil
	case err == nil:
		s.logger.InfoContext(ctx, "order already has a payment, event ignored", telemetry.LogStatus, existing.Status)
		return nil
	case !errors.Is(err, ErrNotFound):
		return err
	}

	covered := true
	if NeedsDebit(o.TotalCents) {
		if covered, err = debitAccount(ctx, tx, o.CustomerID, o.TotalCents); err != nil {
			return err
		}
	}
	p := Charge(o.OrderID, o.CustomerID, o.TotalCents, covered)
	if err := insertPayment(ctx, tx, p, o.Items); err != nil {
		return err
	}

	var payload events.Payload
	if p.Status == StatusCharged {
		payload = events.PaymentProcessed{OrderID: p.OrderID, CustomerID: p.CustomerID, AmountCents: p.AmountCents, Items: o.Items}
	} else {
		payload = events.PaymentFailed{OrderID: p.OrderID, CustomerID: p.CustomerID, AmountCents: p.AmountCents, Reason: ReasonInsufficientFunds}
	}
	if err := outbox.Emit(ctx, tx, serviceName, cause, payload); err != nil {
		return err
	}
	consumer.AfterCommit(ctx, func() { s.metrics.payments.WithLabelValues(string(p.Status)).Inc() })
	if p.Status == StatusCharged {
		s.logger.InfoContext(ctx, "payment charged", telemetry.LogCustomerID, p.CustomerID, "amount_cents", p.AmountCents)
	} else {
		s.logger.InfoContext(ctx, "payment failed", telemetry.LogCustomerID, p.CustomerID, "amount_cents", p.AmountCents,
			telemetry.LogReason, ReasonInsufficientFunds)
	}
	return nil
}

// refundOutOfStock refunds the order's payment on InventoryUnavailable
// (refundPayment with reason out_of_stock). An order without a payment has
// nothing to undo and is left alone.
func (s *service) refundOutOfStock(ctx context.Context, tx pgx.Tx, cause events.Envelope, u events.InventoryUnavailable) error {
	err := s.refundPayment(ctx, tx, cause, u.OrderID, events.ReasonOutOfStock)
	if errors.Is(err, ErrNotFound) {
		s.logger.WarnContext(ctx, "no payment to refund, event ignored", "missing_skus", u.MissingSKUs)
		return nil
	}
	return err
}

// cancelPayment undoes what payment holds for a cancelled order, in tx, on
// OrderCancelled (any reason): a charge not yet refunded is refunded
// (refundPayment, PaymentRefunded with the cancellation's reason); a failed
// or refunded payment holds nothing and is left alone; an order without a
// payment gets a tombstone (a CANCELLED payment of nothing), so that a late
// OrderCreated charges nothing.
func (s *service) cancelPayment(ctx context.Context, tx pgx.Tx, cause events.Envelope, c events.OrderCancelled) error {
	err := s.refundPayment(ctx, tx, cause, c.OrderID, c.Reason)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	// A charge of the order running at the same time waits on this insert,
	// or this insert on its: whichever commits first holds the primary key.
	inserted, err := insertTombstone(ctx, tx, Cancelled(c.OrderID, c.CustomerID))
	if err != nil {
		return err
	}
	if !inserted {
		// The charge committed first: undo it.
		s.logger.InfoContext(ctx, "order charged meanwhile, refunding it")
		return s.refundPayment(ctx, tx, cause, c.OrderID, c.Reason)
	}
	s.logger.InfoContext(ctx, "order cancelled before it was charged, tombstone recorded", telemetry.LogReason, c.Reason)
	return nil
}

// refundPayment undoes the charge of an order in tx (the compensation of
// PaymentProcessed): the payment goes REFUNDED, the amount back to the
// balance, and PaymentRefunded is emitted with reason. It runs on
// InventoryUnavailable and on OrderCancelled, whichever comes first; the
// row lock on the payment makes the other one find it REFUNDED. A payment
// already refunded, a failed one or a tombstone has nothing to undo and is
// left alone. It fails with ErrNotFound when the order has no payment.
func (s *service) refundPayment(ctx context.Context, tx pgx.Tx, cause events.Envelope, orderID, reason string) error {
	p, err := lockPayment(ctx, tx, orderID)
	if err != nil {
		return err
	}
	refunded, err := p.Refund()
	switch {
	case errors.Is(err, ErrAlreadyRefunded):
		s.logger.InfoContext(ctx, "payment already refunded, event ignored")
		return nil
	case errors.Is(err, ErrNotCharged):
		s.logger.InfoContext(ctx, "payment was not charged, nothing to refund", telemetry.LogStatus, p.Status)
		return nil
	case err != nil:
		return err
	}

	if err := setPaymentStatus(ctx, tx, p.OrderID, p.Status, refunded.Status); err != nil {
		return err
	}
	if NeedsDebit(p.AmountCents) {
		ok, err := creditAccount(ctx, tx, p.CustomerID, p.AmountCents)
		if err != nil {
			return err
		}
		if !ok {
			// A charge above 0 debited this account, and accounts are never
			// deleted: this is a broken ledger, not a bad event.
			return fmt.Errorf("refund order %s: account %s is missing", p.OrderID, p.CustomerID)
		}
	}
	err = outbox.Emit(ctx, tx, serviceName, cause, events.PaymentRefunded{
		OrderID: p.OrderID, CustomerID: p.CustomerID, AmountCents: p.AmountCents, Reason: reason,
	})
	if err != nil {
		return err
	}
	consumer.AfterCommit(ctx, s.metrics.refunds.WithLabelValues(reason).Inc)
	s.logger.InfoContext(ctx, "payment refunded", telemetry.LogCustomerID, p.CustomerID, "amount_cents", p.AmountCents, telemetry.LogReason, reason)
	return nil
}
