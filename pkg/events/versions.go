package events

import (
	"encoding/json"
	"fmt"
)

// upcaster turns the data of version n into version n+1.
type upcaster func(data json.RawMessage) (json.RawMessage, error)

// schema is what this build knows of one event type: its current version and
// the upcasters from every older one (index 0 upcasts v1 to v2, and so on).
type schema struct {
	current   int
	upcasters []upcaster
}

// schemas is a fixed table, written here and never changed at run time.
// To change a payload: bump current, append the upcaster from the previous
// version, and add a test decoding the old shape.
var schemas = map[string]schema{
	TypeOrderCreated:         {current: 2, upcasters: []upcaster{orderCreatedV1toV2}},
	TypeOrderCancelled:       {current: 1},
	TypePaymentProcessed:     {current: 1},
	TypePaymentFailed:        {current: 1},
	TypePaymentRefunded:      {current: 1},
	TypeInventoryReserved:    {current: 1},
	TypeInventoryUnavailable: {current: 1},
	TypeProductUpdated:       {current: 1},
	TypeOrderShipped:         {current: 1},
	TypeCustomerNotified:     {current: 1},
	TypeOrderExpired:         {current: 1},
	TypeShipmentCancelled:    {current: 1},
}

func currentVersion(typ string) (int, bool) {
	s, ok := schemas[typ]
	return s.current, ok
}

// Known reports whether this build knows the event type at all. Consumers
// skip types they don't know (tolerant reader).
func Known(typ string) bool {
	_, ok := schemas[typ]
	return ok
}

func upcast(typ string, version int, data json.RawMessage) (json.RawMessage, error) {
	s, ok := schemas[typ]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnexpectedType, typ)
	}
	if version < 1 || version > s.current {
		return nil, fmt.Errorf("%w: %d (this build knows 1 to %d)", unknownVersion(version, s.current), version, s.current)
	}
	for v := version; v < s.current; v++ {
		var err error
		data, err = s.upcasters[v-1](data)
		if err != nil {
			return nil, fmt.Errorf("upcast v%d to v%d: %w", v, v+1, err)
		}
	}
	return data, nil
}

// orderCreatedV1toV2 renames customer_email to email and adds the currency,
// which v1 producers always meant to be USD.
func orderCreatedV1toV2(data json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if m == nil { // the data was null, which unmarshals without an error
		return nil, fmt.Errorf("%w: data is null, not an object", ErrMalformed)
	}
	if email, ok := m["customer_email"]; ok {
		m["email"] = email
		delete(m, "customer_email")
	}
	if _, ok := m["currency"]; !ok {
		m["currency"] = json.RawMessage(`"USD"`)
	}
	return json.Marshal(m)
}
