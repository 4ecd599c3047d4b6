package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/sagashop/sagashop/pkg/validation"
)

// Status is where an order is in the saga.
type Status string

// The statuses of an order. PENDING → PAID → RESERVED → SHIPPED; CANCELLED
// from PENDING or PAID, and from RESERVED only when the order timed out
// (shipping, asked first, answered that it will never ship). SHIPPED and
// CANCELLED are terminal.
const (
	StatusPending   Status = "PENDING"
	StatusPaid      Status = "PAID"
	StatusReserved  Status = "RESERVED"
	StatusShipped   Status = "SHIPPED"
	StatusCancelled Status = "CANCELLED"
)

// Limits of a new order. Money is int64 cents everywhere.
const (
	Currency      = "USD"
	MaxItems      = 50
	MaxQuantity   = 1000
	MaxMoneyCents = 1_000_000_00 // one million dollars: prices and order totals
	MaxEmailLen   = 254
	MaxKeyLen     = 255 // Idempotency-Key
)

// Errors of the order domain, checked with errors.Is.
var (
	ErrNotFound = errors.New("order not found")
	// ErrInvalid: the request breaks a rule of the domain; a
	// validation.Fields says which fields.
	ErrInvalid = validation.ErrInvalid
	// ErrConflict: an Idempotency-Key was reused for a different request.
	ErrConflict = errors.New("idempotency key reused with a different request")
)

// rank orders the non-terminal statuses; a status only moves to a higher
// rank, because events from different topics can arrive in any order.
func rank(s Status) int {
	switch s {
	case StatusPending:
		return 0
	case StatusPaid:
		return 1
	case StatusReserved:
		return 2
	case StatusShipped, StatusCancelled:
		return 3
	}
	return -1
}

// Terminal reports whether no event changes an order in status s any more.
func (s Status) Terminal() bool { return s == StatusShipped || s == StatusCancelled }

// Decision is what an event asking for a status does to an order.
type Decision int

const (
	// Advance: move the order to the requested status.
	Advance Decision = iota
	// Stale: the order is already at or past the requested status (a late
	// or repeated event); nothing to do.
	Stale
	// Final: the order is terminal; nothing changes it.
	Final
	// Refused: the request contradicts the saga (a reserved order is
	// cancelled only by shipping's answer to its deadline); nothing to do,
	// but worth a warning.
	Refused
)

func (d Decision) String() string {
	switch d {
	case Advance:
		return "advance"
	case Stale:
		return "stale"
	case Final:
		return "final"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("Decision(%d)", int(d))
}

// Transition decides whether an order in status from moves to status to
// (with reason, for CANCELLED).
//   - A terminal order never changes.
//   - SHIPPED is reached from any non-terminal status: shipping only ships
//     reserved orders, so an early OrderShipped means the other events are
//     still on their way.
//   - CANCELLED is reached from PENDING or PAID for any reason, and from
//     RESERVED only with reason timed_out: inventory reserves all items or
//     none, so a reserved order ships unless it passes its deadline and
//     shipping, the saga's pivot, answers that it will never ship.
//   - PAID and RESERVED are reached only from a lower rank.
func Transition(from, to Status, reason string) Decision {
	if rank(from) < 0 || rank(to) < 0 {
		return Refused
	}
	if from.Terminal() {
		return Final
	}
	switch to {
	case StatusShipped:
		return Advance
	case StatusCancelled:
		if from == StatusReserved && reason != ReasonTimedOut {
			return Refused
		}
		return Advance
	}
	if rank(to) > rank(from) {
		return Advance
	}
	return Stale
}

// ReasonTimedOut is the cancellation reason of an order that passed its
// deadline (events.ReasonTimedOut; the domain imports only the standard
// library).
const ReasonTimedOut = "timed_out"

// Stuck says whether an order in status with deadline is past it at now
// while still not terminal, and why it is still open: before the sweeper
// has expired it (expired false), or while shipping has not answered the
// OrderExpired yet. It returns "" for an order that is not stuck.
func Stuck(status Status, deadline time.Time, expired bool, now time.Time) string {
	switch {
	case status.Terminal() || deadline.IsZero() || now.Before(deadline):
		return ""
	case expired:
		return "deadline passed, waiting for shipping's answer"
	}
	return "deadline passed, not yet expired by the sweeper"
}

// LineItem is one line of a new order as the customer asks for it: no price,
// which comes from the catalog.
type LineItem struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// NewOrder is a customer's request for an order.
type NewOrder struct {
	CustomerID string     `json:"customer_id"`
	Email      string     `json:"email"`
	Items      []LineItem `json:"items"`
}

// Validate returns a validation.Fields error naming the fields of o that break a
// rule, or nil. validID is the shared check for identifiers (customer id,
// SKU).
func (o NewOrder) Validate(validID func(string) bool) error {
	fields := validation.Fields{}
	switch {
	case o.CustomerID == "":
		fields["customer_id"] = "is required"
	case !validID(o.CustomerID):
		fields["customer_id"] = "must be 1 to 64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
	}
	if msg := checkEmail(o.Email); msg != "" {
		fields["email"] = msg
	}
	switch {
	case len(o.Items) == 0:
		fields["items"] = "must list 1 to 50 items"
	case len(o.Items) > MaxItems:
		fields["items"] = fmt.Sprintf("must list 1 to %d items, not %d", MaxItems, len(o.Items))
	default:
		seen := make(map[string]int, len(o.Items))
		for i, it := range o.Items {
			key := fmt.Sprintf("items[%d]", i)
			switch {
			case it.SKU == "":
				fields[key+".sku"] = "is required"
			case !validID(it.SKU):
				fields[key+".sku"] = "must be 1 to 64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
			default:
				if first, dup := seen[it.SKU]; dup {
					fields[key+".sku"] = fmt.Sprintf("duplicates items[%d]; list each sku once with its total quantity", first)
				} else {
					seen[it.SKU] = i
				}
			}
			if it.Quantity < 1 || it.Quantity > MaxQuantity {
				fields[key+".quantity"] = fmt.Sprintf("must be 1 to %d", MaxQuantity)
			}
		}
	}
	return fields.Err()
}

// checkEmail returns what is wrong with email, or "". It takes a bare
// address only (no display name, no angle brackets, no comments).
func checkEmail(email string) string {
	switch {
	case email == "":
		return "is required"
	case len(email) > MaxEmailLen:
		return fmt.Sprintf("must be at most %d characters", MaxEmailLen)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return "must be an email address like name@example.com"
	}
	return ""
}

// Hash is the fingerprint of o that decides whether a request repeated with
// the same Idempotency-Key is the same request: customer id, email and the
// items sorted by SKU, so the order in which items are listed does not
// matter.
func (o NewOrder) Hash() string {
	items := slices.Clone(o.Items)
	slices.SortFunc(items, func(a, b LineItem) int {
		if c := strings.Compare(a.SKU, b.SKU); c != 0 {
			return c
		}
		return a.Quantity - b.Quantity
	})
	canonical, _ := json.Marshal(NewOrder{CustomerID: o.CustomerID, Email: o.Email, Items: items}) // cannot fail: strings and ints
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// ValidIdempotencyKey reports whether k is 1 to 255 visible ASCII
// characters.
func ValidIdempotencyKey(k string) bool {
	if len(k) < 1 || len(k) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// Price returns the total of items priced from prices (the catalog, by
// SKU). It fails with a validation.Fields error naming every SKU not in the
// catalog, or when the total exceeds MaxMoneyCents.
func Price(items []LineItem, prices map[string]int64) (int64, error) {
	fields := validation.Fields{}
	var total int64
	for i, it := range items {
		price, ok := prices[it.SKU]
		if !ok {
			fields[fmt.Sprintf("items[%d].sku", i)] = fmt.Sprintf("unknown sku %q: not in the catalog", it.SKU)
			continue
		}
		total += int64(it.Quantity) * price // at most 50 × 1000 × 1e8: no overflow
	}
	if len(fields) > 0 {
		return 0, fields
	}
	if total > MaxMoneyCents {
		return 0, validation.Fields{
			"items": fmt.Sprintf("the order total %d cents exceeds the limit of %d cents", total, int64(MaxMoneyCents)),
		}
	}
	return total, nil
}

// Product is the order service's copy of a catalog entry.
type Product struct {
	SKU        string
	Name       string
	PriceCents int64
}

// Check returns what is wrong with p as a catalog entry, or nil.
func (p Product) Check(validID func(string) bool) error {
	var problems []string
	if !validID(p.SKU) {
		problems = append(problems, fmt.Sprintf("sku %.80q is not a valid identifier", p.SKU))
	}
	if p.PriceCents < 0 || p.PriceCents > MaxMoneyCents {
		problems = append(problems, fmt.Sprintf("price %d cents is outside 0 to %d", p.PriceCents, int64(MaxMoneyCents)))
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid product: %s", strings.Join(problems, "; "))
	}
	return nil
}

// SagaOutcome is the label value of the saga metrics for a terminal status.
func SagaOutcome(s Status) string {
	switch s {
	case StatusShipped:
		return "shipped"
	case StatusCancelled:
		return "cancelled"
	}
	return ""
}
