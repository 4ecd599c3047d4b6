package events

import "time"

// Event types. The saga: OrderCreated → PaymentProcessed → InventoryReserved
// → OrderShipped; compensations: PaymentFailed → OrderCancelled, and
// InventoryUnavailable → PaymentRefunded → OrderCancelled; the deadline:
// OrderExpired → ShipmentCancelled → OrderCancelled (timed_out), on which
// every participant undoes what it holds. docs/flows.md says who emits and
// who consumes each.
const (
	TypeOrderCreated         = "OrderCreated"
	TypeOrderCancelled       = "OrderCancelled"
	TypePaymentProcessed     = "PaymentProcessed"
	TypePaymentFailed        = "PaymentFailed"
	TypePaymentRefunded      = "PaymentRefunded"
	TypeInventoryReserved    = "InventoryReserved"
	TypeInventoryUnavailable = "InventoryUnavailable"
	TypeProductUpdated       = "ProductUpdated"
	TypeOrderShipped         = "OrderShipped"
	TypeCustomerNotified     = "CustomerNotified"
	TypeOrderExpired         = "OrderExpired"
	TypeShipmentCancelled    = "ShipmentCancelled"
)

// Cancellation reasons carried by OrderCancelled and shown by the order API.
const (
	ReasonPaymentFailed = "payment_failed"
	ReasonOutOfStock    = "out_of_stock"
	// ReasonTimedOut: the order passed its deadline (the order service's
	// SAGA_DEADLINE) and shipping answered that it will never ship.
	ReasonTimedOut = "timed_out"
)

// Item is one line of an order. Money is always in integer minor units.
type Item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// OrderCreated (order service, v2): a customer placed an order; prices come
// from the order service's copy of the catalog.
// v1 named the email "customer_email" and had no currency (always USD).
type OrderCreated struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Email      string `json:"email"`
	Currency   string `json:"currency"`
	Items      []Item `json:"items"`
	TotalCents int64  `json:"total_cents"`
}

// OrderCancelled (order service): the order ended without shipping. Every
// participant undoes what it holds for the order (payment refunds a charge,
// inventory releases a reservation) and refuses later work for it.
type OrderCancelled struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"`
}

// PaymentProcessed (payment service): the order total was charged. It
// carries the items so inventory can reserve them without a query back.
type PaymentProcessed struct {
	OrderID     string `json:"order_id"`
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
	Items       []Item `json:"items"`
}

// PaymentFailed (payment service): the balance did not cover the total.
type PaymentFailed struct {
	OrderID     string `json:"order_id"`
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason"`
}

// PaymentRefunded (payment service): a charge was returned to the customer
// (compensation of PaymentProcessed after InventoryUnavailable).
type PaymentRefunded struct {
	OrderID     string `json:"order_id"`
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason"`
}

// InventoryReserved (inventory service): every item of the order is held.
type InventoryReserved struct {
	OrderID string `json:"order_id"`
	Items   []Item `json:"items"`
}

// InventoryUnavailable (inventory service): at least one item could not be
// reserved, so nothing was.
type InventoryUnavailable struct {
	OrderID     string   `json:"order_id"`
	MissingSKUs []string `json:"missing_skus"`
}

// ProductUpdated (inventory service, keyed by SKU): a catalog entry was
// created or replaced. Carries the state others keep a copy of.
type ProductUpdated struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
}

// OrderShipped (shipping service): the order left the warehouse.
type OrderShipped struct {
	OrderID        string `json:"order_id"`
	TrackingNumber string `json:"tracking_number"`
}

// CustomerNotified (email service): an email about the order was sent.
type CustomerNotified struct {
	OrderID string `json:"order_id"`
	Kind    string `json:"kind"`
}

// OrderExpired (order service): the order passed its deadline before it
// ended. The order keeps its status: shipping, the saga's pivot, decides
// whether it ships (it already did) or is cancelled (ShipmentCancelled).
type OrderExpired struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Deadline   time.Time `json:"deadline"`
}

// ShipmentCancelled (shipping service): the order will never ship; shipping
// recorded so before any shipment, and the order is to be cancelled with
// Reason (timed_out).
type ShipmentCancelled struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

func (OrderCreated) EventType() string         { return TypeOrderCreated }
func (OrderCancelled) EventType() string       { return TypeOrderCancelled }
func (PaymentProcessed) EventType() string     { return TypePaymentProcessed }
func (PaymentFailed) EventType() string        { return TypePaymentFailed }
func (PaymentRefunded) EventType() string      { return TypePaymentRefunded }
func (InventoryReserved) EventType() string    { return TypeInventoryReserved }
func (InventoryUnavailable) EventType() string { return TypeInventoryUnavailable }
func (ProductUpdated) EventType() string       { return TypeProductUpdated }
func (OrderShipped) EventType() string         { return TypeOrderShipped }
func (CustomerNotified) EventType() string     { return TypeCustomerNotified }
func (OrderExpired) EventType() string         { return TypeOrderExpired }
func (ShipmentCancelled) EventType() string    { return TypeShipmentCancelled }

func (p OrderCreated) Subject() string         { return p.OrderID }
func (p OrderCancelled) Subject() string       { return p.OrderID }
func (p PaymentProcessed) Subject() string     { return p.OrderID }
func (p PaymentFailed) Subject() string        { return p.OrderID }
func (p PaymentRefunded) Subject() string      { return p.OrderID }
func (p InventoryReserved) Subject() string    { return p.OrderID }
func (p InventoryUnavailable) Subject() string { return p.OrderID }
func (p ProductUpdated) Subject() string       { return p.SKU }
func (p OrderShipped) Subject() string         { return p.OrderID }
func (p CustomerNotified) Subject() string     { return p.OrderID }
func (p OrderExpired) Subject() string         { return p.OrderID }
func (p ShipmentCancelled) Subject() string    { return p.OrderID }
