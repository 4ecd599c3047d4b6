package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sagashop/sagashop/pkg/validation"
)

// Limits of a product as the catalog API accepts it, and of one order line.
const (
	MaxNameLength   = 200 // characters
	MaxPriceCents   = 100_000_000
	MaxAvailable    = 1_000_000
	MaxLineQuantity = 1000
)

// Errors the use cases return; callers branch on them with errors.Is.
var (
	// ErrNotFound: no such product or reservation.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a command has invalid fields (see validation.Fields).
	ErrInvalid = validation.ErrInvalid
	// ErrAlreadyShipped: the reservation was released before.
	ErrAlreadyShipped = errors.New("reservation already shipped")
	// ErrNotReserved: the reservation was rejected, so nothing is held.
	ErrNotReserved = errors.New("nothing reserved")
	// ErrCancelled: the order was cancelled; its units went back to
	// available (RELEASED), or none were ever held (a tombstone, CANCELLED).
	ErrCancelled = errors.New("order cancelled")
)

// Product is one catalog entry and its stock.
type Product struct {
	SKU        string
	Name       string
	PriceCents int64
	Available  int // units that can still be reserved
	Reserved   int // units held for paid orders until they ship
}

// ValidateProduct checks the fields of a product as a client sets them.
func ValidateProduct(name string, priceCents int64, available int) error {
	v := validation.Fields{}
	if msg := CheckName(name); msg != "" {
		v["name"] = msg
	}
	if msg := CheckPrice(priceCents); msg != "" {
		v["price_cents"] = msg
	}
	if msg := CheckAvailable(available); msg != "" {
		v["available"] = msg
	}
	return v.Err()
}

// CheckName says what is wrong with a product name, or "" if nothing is. A
// control character (NUL above all, which PostgreSQL's text cannot hold) is
// never part of a name.
func CheckName(name string) string {
	if n := utf8.RuneCountInString(name); n < 1 || n > MaxNameLength || strings.TrimSpace(name) == "" {
		return fmt.Sprintf("must be 1 to %d characters, not all blank", MaxNameLength)
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return "must not contain control characters"
	}
	return ""
}

// CheckPrice says what is wrong with a price, or "" if nothing is.
func CheckPrice(priceCents int64) string {
	if priceCents < 0 || priceCents > MaxPriceCents {
		return fmt.Sprintf("must be from 0 to %d", MaxPriceCents)
	}
	return ""
}

// CheckAvailable says what is wrong with a number of available units, or
// "" if nothing is.
func CheckAvailable(available int) string {
	if available < 0 || available > MaxAvailable {
		return fmt.Sprintf("must be from 0 to %d", MaxAvailable)
	}
	return ""
}

// Demand is what one order asks of the stock: the units of each SKU its
// lines add up to (an order may list the same SKU on two lines, and it is
// the sum that has to be available), and which SKUs are on a line that can
// never be reserved. Add builds it one order line at a time; the zero value
// is an order without lines.
type Demand struct {
	units  map[string]int
	broken map[string]bool // SKUs on a line whose quantity is out of range
}

// Add adds an order line to d. A line whose quantity is not from 1 to
// MaxLineQuantity cannot be reserved: its SKU counts as missing.
func (d *Demand) Add(sku string, quantity int) {
	if d.units == nil {
		d.units, d.broken = map[string]int{}, map[string]bool{}
	}
	d.units[sku] += quantity
	if quantity < 1 || quantity > MaxLineQuantity {
		d.broken[sku] = true
	}
}

// Units returns the units of sku that d asks for.
func (d Demand) Units(sku string) int { return d.units[sku] }

// SKUs returns the distinct SKUs of d, sorted: the order in which product
// rows are locked and updated, the same for every transaction, so
// concurrent reservations never deadlock.
func (d Demand) SKUs() []string {
	skus := make([]string, 0, len(d.units))
	for sku := range d.units {
		skus = append(skus, sku)
	}
	sort.Strings(skus)
	return skus
}

// ReservationStatus is where an order's reservation stands: RESERVED
// (every item held) moves to SHIPPED when the order leaves the warehouse,
// or to RELEASED when it is cancelled first; REJECTED (nothing held) and
// CANCELLED (a tombstone: the order was cancelled before it was paid for
// here) are created so. All but RESERVED are terminal.
type ReservationStatus string

const (
	StatusReserved  ReservationStatus = "RESERVED"
	StatusRejected  ReservationStatus = "REJECTED"
	StatusShipped   ReservationStatus = "SHIPPED"
	StatusReleased  ReservationStatus = "RELEASED"
	StatusCancelled ReservationStatus = "CANCELLED"
)

// Reservation is the outcome of reserving one order's items. The items are
// stored with it, but the domain reads only their Demand.
type Reservation struct {
	OrderID string
	Status  ReservationStatus
	// Demand is what the order asked for: the units held while RESERVED.
	Demand Demand
	// MissingSKUs are the SKUs that could not be reserved (REJECTED only),
	// sorted. Not stored: it is the content of InventoryUnavailable.
	MissingSKUs []string
}

// Reserve decides the reservation of an order's demand given the current
// stock of its products (stock holds the products that exist; a SKU missing
// from it is unknown). It is all or nothing: RESERVED when every SKU's
// available units cover the demand for it, otherwise REJECTED with the SKUs
// that fall short. A SKU on a line that cannot be reserved (Demand.Add)
// counts as missing. An order without items has nothing that could be
// reserved and is REJECTED.
func Reserve(orderID string, d Demand, stock map[string]Product) Reservation {
	missing := map[string]bool{}
	for sku, qty := range d.units {
		p, ok := stock[sku]
		if !ok || p.Available < qty || d.broken[sku] {
			missing[sku] = true
		}
	}
	r := Reservation{OrderID: orderID, Status: StatusReserved, Demand: d}
	if len(missing) > 0 || len(d.units) == 0 {
		r.Status = StatusRejected
		r.MissingSKUs = make([]string, 0, len(missing))
		for sku := range missing {
			r.MissingSKUs = append(r.MissingSKUs, sku)
		}
		sort.Strings(r.MissingSKUs)
	}
	return r
}

// Ship returns r shipped: its reserved units have left the warehouse. It
// fails with ErrAlreadyShipped when r was shipped before, ErrNotReserved
// when r was rejected and ErrCancelled when its order was cancelled: in
// every case nothing is held to let go.
func (r Reservation) Ship() (Reservation, error) {
	switch r.Status {
	case StatusReserved:
		r.Status = StatusShipped
		return r, nil
	case StatusShipped:
		return r, ErrAlreadyShipped
	case StatusReleased, StatusCancelled:
		return r, fmt.Errorf("ship reservation in status %s: %w", r.Status, ErrCancelled)
	default:
		return r, fmt.Errorf("ship reservation in status %s: %w", r.Status, ErrNotReserved)
	}
}

// Release returns r released: its order was cancelled, and the units it
// held go back to available. It fails with ErrCancelled when r was released
// before or is a tombstone, ErrAlreadyShipped when the units left the
// warehouse and ErrNotReserved when r was rejected: in every case there is
// nothing to give back.
func (r Reservation) Release() (Reservation, error) {
	switch r.Status {
	case StatusReserved:
		r.Status = StatusReleased
		return r, nil
	case StatusShipped:
		return r, ErrAlreadyShipped
	case StatusReleased, StatusCancelled:
		return r, fmt.Errorf("release reservation in status %s: %w", r.Status, ErrCancelled)
	default:
		return r, fmt.Errorf("release reservation in status %s: %w", r.Status, ErrNotReserved)
	}
}
