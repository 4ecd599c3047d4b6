package events

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/google/uuid"
)

// The services, as they name themselves in ce_source: each publishes on a
// topic of its own.
const (
	SourceOrder     = "order"
	SourcePayment   = "payment"
	SourceInventory = "inventory"
	SourceShipping  = "shipping"
	SourceEmail     = "email"
)

// ErrUnexpectedSource: an event arrived on a topic its type does not travel
// on, or from a service that does not produce it. Such an event is never
// applied: anyone who can write to the broker could have forged it.
var ErrUnexpectedSource = errors.New("unexpected source")

// Route is where events of one type travel: the only topic they are
// published on and the only service (ce_source) that publishes them.
type Route struct {
	Topic  string
	Source string
}

// Routes maps event types to their routes: the system's map of who emits
// what where, which producers (outbox.Emit) and consumers both read.
type Routes map[string]Route

// saga is a fixed table, written here and never changed at run time; Saga
// hands out copies.
var saga = Routes{
	TypeOrderCreated:         {TopicOrders, SourceOrder},
	TypeOrderCancelled:       {TopicOrders, SourceOrder},
	TypePaymentProcessed:     {TopicPayments, SourcePayment},
	TypePaymentFailed:        {TopicPayments, SourcePayment},
	TypePaymentRefunded:      {TopicPayments, SourcePayment},
	TypeInventoryReserved:    {TopicInventory, SourceInventory},
	TypeInventoryUnavailable: {TopicInventory, SourceInventory},
	TypeProductUpdated:       {TopicInventory, SourceInventory},
	TypeOrderShipped:         {TopicShipping, SourceShipping},
	TypeCustomerNotified:     {TopicEmail, SourceEmail},
	TypeOrderExpired:         {TopicOrders, SourceOrder},
	TypeShipmentCancelled:    {TopicShipping, SourceShipping},
}

// Saga returns the routes of Sagashop's order saga: each service publishes
// on its own topic. docs/flows.md draws the same table.
func Saga() Routes { return maps.Clone(saga) }

// RouteOf returns the saga's route for an event type.
func RouteOf(typ string) (Route, bool) {
	r, ok := saga[typ]
	return r, ok
}

// Topics returns the topics events of types travel on, sorted, each once.
// It fails for a type with no route: a consumer with a handler for it would
// never be given one.
func (rs Routes) Topics(types ...string) ([]string, error) {
	var topics []string
	var missing []string
	for _, typ := range types {
		r, ok := rs[typ]
		if !ok {
			missing = append(missing, typ)
			continue
		}
		if !slices.Contains(topics, r.Topic) {
			topics = append(topics, r.Topic)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("no route for event types %v", missing)
	}
	slices.Sort(topics)
	return topics, nil
}

// Check reports whether e, read from topic, travelled its type's route. It
// fails with ErrUnexpectedSource when the type has no route, belongs to
// another topic, or comes from a service that does not produce it.
func (rs Routes) Check(topic string, e Envelope) error {
	r, ok := rs[e.Type]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s has no route", ErrUnexpectedSource, e.Type)
	case r.Topic != topic:
		return fmt.Errorf("%w: %s on %s, it travels on %s", ErrUnexpectedSource, e.Type, topic, r.Topic)
	case r.Source != e.Source:
		return fmt.Errorf("%w: %s from %.64q, it comes from %s", ErrUnexpectedSource, e.Type, e.Source, r.Source)
	}
	return nil
}

// ParseOrderID reads an order id: a UUID in its canonical 36-character form
// (any case), and nothing else. It fails with ErrMalformed.
func ParseOrderID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if len(s) != 36 || err != nil {
		return uuid.UUID{}, fmt.Errorf("%w: order id %.64q is not a UUID", ErrMalformed, s)
	}
	return id, nil
}
