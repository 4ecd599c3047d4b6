package main

import (
	"errors"
	"fmt"

	"github.com/sagashop/sagashop/pkg/validation"
)

// Status is where a payment stands. A payment is created CHARGED or FAILED
// on OrderCreated, or CANCELLED on OrderCancelled when the order was
// cancelled before it was charged; only CHARGED moves on, to REFUNDED.
// FAILED, REFUNDED and CANCELLED are terminal.
type Status string

const (
	StatusCharged  Status = "CHARGED"
	StatusFailed   Status = "FAILED"
	StatusRefunded Status = "REFUNDED"
	// StatusCancelled is a tombstone: the order was cancelled before it was
	// charged, so nothing is ever charged for it (a late OrderCreated, a
	// dead letter replayed, is refused). It holds no money.
	StatusCancelled Status = "CANCELLED"
)

// ReasonInsufficientFunds is the reason PaymentFailed carries.
const ReasonInsufficientFunds = "insufficient_funds"

// Deposit limits, in cents.
const (
	MinDepositCents = 1
	MaxDepositCents = 100_000_000
)

// Errors the use cases return; callers branch on them with errors.Is.
var (
	// ErrNotFound: no such account or payment.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a command has invalid fields (see validation.Fields).
	ErrInvalid = validation.ErrInvalid
	// ErrAlreadyRefunded: the payment was refunded before; nothing to do.
	ErrAlreadyRefunded = errors.New("payment already refunded")
	// ErrNotCharged: the payment failed, or the order was cancelled before
	// it was charged, so there is nothing to refund.
	ErrNotCharged = errors.New("payment was not charged")
)

// Account is a customer's balance. It exists from the first deposit on.
type Account struct {
	CustomerID   string
	BalanceCents int64
}

// Payment is the charge of one order's total to one customer's balance. The
// order's items travel with it (stored, and carried on by PaymentProcessed),
// but the payment service does not interpret them.
type Payment struct {
	OrderID     string
	CustomerID  string
	AmountCents int64
	Status      Status
}

// ValidateDeposit checks the amount of a deposit.
func ValidateDeposit(amountCents int64) error {
	v := validation.Fields{}
	if amountCents < MinDepositCents || amountCents > MaxDepositCents {
		v["amount_cents"] = fmt.Sprintf("must be from %d to %d", MinDepositCents, MaxDepositCents)
	}
	return v.Err()
}

// ValidateCharge checks what an order asks to be charged. A negative amount
// would credit the account, so it is refused rather than charged.
func ValidateCharge(customerID string, amountCents int64) error {
	v := validation.Fields{}
	if customerID == "" {
		v["customer_id"] = "is required"
	}
	if amountCents < 0 {
		v["amount_cents"] = "must not be negative"
	}
	return v.Err()
}

// NeedsDebit reports whether charging amountCents has to take money from an
// account. A zero total needs nothing: a balance of 0, even that of a
// customer who never deposited, covers it.
func NeedsDebit(amountCents int64) bool { return amountCents > 0 }

// Charge returns the payment of an order given whether the customer's
// balance covered the amount (covered is the outcome of the guarded debit,
// or true when NeedsDebit is false): CHARGED if it did, FAILED otherwise.
func Charge(orderID, customerID string, amountCents int64, covered bool) Payment {
	p := Payment{OrderID: orderID, CustomerID: customerID, AmountCents: amountCents, Status: StatusFailed}
	if covered {
		p.Status = StatusCharged
	}
	return p
}

// Cancelled returns the tombstone of an order cancelled before it was
// charged: a CANCELLED payment of nothing.
func Cancelled(orderID, customerID string) Payment {
	return Payment{OrderID: orderID, CustomerID: customerID, AmountCents: 0, Status: StatusCancelled}
}

// Refund returns p refunded. It fails with ErrAlreadyRefunded when p was
// refunded before and ErrNotCharged when p failed or is a tombstone: in
// every case there is nothing to give back.
func (p Payment) Refund() (Payment, error) {
	switch p.Status {
	case StatusCharged:
		p.Status = StatusRefunded
		return p, nil
	case StatusRefunded:
		return p, ErrAlreadyRefunded
	default:
		return p, fmt.Errorf("refund payment in status %s: %w", p.Status, ErrNotCharged)
	}
}
