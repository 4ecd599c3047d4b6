package events

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestCloudEventsRoundTrip(t *testing.T) {
	created := OrderCreated{
		OrderID: "0193a5c0-0000-7000-8000-000000000001", CustomerID: "c-1", Email: "c1@example.com", Currency: "USD",
		Items: []Item{{SKU: "mug", Quantity: 2, UnitPriceCents: 1299}}, TotalCents: 2598,
	}
	cause, err := New("payment", PaymentFailed{OrderID: created.OrderID})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New("order", created)
	if err != nil {
		t.Fatal(err)
	}
	e = e.CausedBy(cause)
	e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	e.TraceState = "vendor=1"

	m := ToMessage(TopicOrders, e)
	if string(m.Key) != created.OrderID || m.Topic != TopicOrders {
		t.Fatalf("key %q topic %q", m.Key, m.Topic)
	}
	for h, want := range map[string]string{
		HeaderSpecVersion: "1.0", HeaderID: e.ID, HeaderType: TypeOrderCreated, HeaderSource: "order",
		HeaderSubject: created.OrderID, HeaderContentType: "application/json", HeaderSchemaVersion: "2",
		HeaderCorrelationID: created.OrderID, HeaderCausationID: cause.ID, HeaderTraceParent: e.TraceParent,
		HeaderTraceState: "vendor=1",
	} {
		if got := Header(m, h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if Header(m, HeaderTime) == "" {
		t.Error("no ce_time header")
	}

	back, err := FromMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Time.Equal(e.Time) {
		t.Errorf("time %v, want %v", back.Time, e.Time)
	}
	back.Time = e.Time
	if !reflect.DeepEqual(back, e) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, e)
	}
	got, err := Decode[OrderCreated](back)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, created) {
		t.Errorf("payload %+v, want %+v", got, created)
	}
}

func TestDecodeUpcastsOrderCreatedV1(t *testing.T) {
	v1 := `{"order_id":"o-1","customer_id":"c-1","customer_email":"old@example.com",` +
		`"items":[{"sku":"mug","quantity":1,"unit_price_cents":500}],"total_cents":500}`
	e := Envelope{ID: "0193a5c0-0000-7000-8000-000000000002", Type: TypeOrderCreated, SchemaVersion: 1,
		Source: "order", Subject: "o-1", Data: json.RawMessage(v1)}
	got, err := Decode[OrderCreated](e)
	if err != nil {
		t.Fatal(err)
	}
	want := OrderCreated{OrderID: "o-1", CustomerID: "c-1", Email: "old@example.com", Currency: "USD",
		Items: []Item{{SKU: "mug", Quantity: 1, UnitPriceCents: 500}}, TotalCents: 500}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	base := Envelope{ID: "0193a5c0-0000-7000-8000-000000000003", Type: TypeOrderShipped, SchemaVersion: 1,
		Source: "shipping", Subject: "o-1", Data: json.RawMessage(`{"order_id":"o-1","tracking_number":"T"}`)}
	tests := []struct {
		name   string
		change func(*Envelope)
		want   error
	}{
		{"future version", func(e *Envelope) { e.SchemaVersion = 7 }, ErrUnknownVersion},
		{"version zero", func(e *Envelope) { e.SchemaVersion = 0 }, ErrUnknownVersion},
		{"not json", func(e *Envelope) { e.Data = json.RawMessage(`{nope`) }, ErrMalformed},
		{"wrong field type", func(e *Envelope) { e.Data = json.RawMessage(`{"order_id":5}`) }, ErrMalformed},
		{"no subject in data", func(e *Envelope) { e.Data = json.RawMessage(`{}`) }, ErrMalformed},
		{"data about another subject", func(e *Envelope) { e.Subject = "o-2" }, ErrMalformed},
		{"other type", func(e *Envelope) { e.Type = TypeOrderCreated }, ErrUnexpectedType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			tt.change(&e)
			if _, err := Decode[OrderShipped](e); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Decode[OrderShipped](base); err != nil {
		t.Fatalf("base envelope: %v", err)
	}
}

func TestFromMessageRejects(t *testing.T) {
	good, err := New("shipping", OrderShipped{OrderID: "o-1", TrackingNumber: "T"})
	if err != nil {
		t.Fatal(err)
	}
	without := func(key string) func(*kafka.Message) {
		return func(m *kafka.Message) {
			var h []kafka.Header
			for _, x := range m.Headers {
				if x.Key != key {
					h = append(h, x)
				}
			}
			m.Headers = h
		}
	}
	set := func(key, value string) func(*kafka.Message) {
		return func(m *kafka.Message) {
			without(key)(m)
			m.Headers = append(m.Headers, kafka.Header{Key: key, Value: []byte(value)})
		}
	}
	tests := []struct {
		name   string
		change func(*kafka.Message)
		want   error
	}{
		{"no id", without(HeaderID), ErrMissingHeader},
		{"no type", without(HeaderType), ErrMissingHeader},
		{"no specversion", without(HeaderSpecVersion), ErrMissingHeader},
		{"wrong specversion", set(HeaderSpecVersion, "0.3"), ErrMalformed},
		{"id not a uuid", set(HeaderID, "'; DROP TABLE x;--"), ErrMalformed},
		{"bad time", set(HeaderTime, "yesterday"), ErrMalformed},
		{"bad version", set(HeaderSchemaVersion, "two"), ErrMalformed},
		{"xml", set(HeaderContentType, "application/xml"), ErrUnsupportedContent},
		{"no headers at all", func(m *kafka.Message) { m.Headers = nil }, ErrMissingHeader},
		{"key is not the subject", func(m *kafka.Message) { m.Key = []byte("o-2") }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ToMessage(TopicShipping, good)
			tt.change(&m)
			if _, err := FromMessage(m); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFromMessageDefaults(t *testing.T) {
	// A producer that sends only the required CloudEvents attributes: the
	// subject falls back to the key and the version to 1.
	m := kafka.Message{Key: []byte("o-9"), Value: []byte(`{"order_id":"o-9"}`), Headers: []kafka.Header{
		{Key: HeaderSpecVersion, Value: []byte("1.0")},
		{Key: HeaderID, Value: []byte("0193a5c0-0000-7000-8000-000000000004")},
		{Key: HeaderType, Value: []byte(TypeOrderCancelled)},
		{Key: HeaderSource, Value: []byte("elsewhere")},
	}}
	e, err := FromMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if e.Subject != "o-9" || e.SchemaVersion != 1 {
		t.Fatalf("subject %q version %d", e.Subject, e.SchemaVersion)
	}
}

func TestEveryTypeHasASchema(t *testing.T) {
	payloads := []Payload{OrderCreated{}, OrderCancelled{}, PaymentProcessed{}, PaymentFailed{}, PaymentRefunded{},
		InventoryReserved{}, InventoryUnavailable{}, ProductUpdated{}, OrderShipped{}, CustomerNotified{},
		OrderExpired{}, ShipmentCancelled{}}
	for _, p := range payloads {
		s, ok := schemas[p.EventType()]
		if !ok {
			t.Errorf("%s has no schema", p.EventType())
			continue
		}
		if len(s.upcasters) != s.current-1 {
			t.Errorf("%s: version %d needs %d upcasters, has %d", p.EventType(), s.current, s.current-1, len(s.upcasters))
		}
	}
	if Known("Bogus") || !Known(TypeOrderShipped) {
		t.Error("Known is wrong")
	}
	if !strings.HasSuffix(DeadLetterTopic("payment"), ".dlq") {
		t.Error("dead-letter topic name")
	}
}

func TestRoutes(t *testing.T) {
	routes := Saga()
	for typ := range schemas {
		if _, ok := routes[typ]; !ok {
			t.Errorf("%s has a schema but no route", typ)
		}
	}
	topics, err := routes.Topics(TypeOrderShipped, TypePaymentFailed, TypePaymentProcessed)
	if err != nil || !reflect.DeepEqual(topics, []string{TopicPayments, TopicShipping}) {
		t.Errorf("Topics = %v, %v", topics, err)
	}
	if _, err := routes.Topics(TypeOrderShipped, "Bogus"); err == nil || !strings.Contains(err.Error(), "Bogus") {
		t.Errorf("Topics with an unrouted type: %v", err)
	}
	if got := Topics(); len(got) != 5 {
		t.Errorf("Topics() = %v, want the five service topics", got)
	}

	paid := Envelope{Type: TypePaymentProcessed, Source: SourcePayment}
	for name, tc := range map[string]struct {
		topic string
		e     Envelope
		ok    bool
	}{
		"its route":     {TopicPayments, paid, true},
		"wrong topic":   {TopicShipping, paid, false},
		"wrong source":  {TopicPayments, Envelope{Type: TypePaymentProcessed, Source: SourceShipping}, false},
		"no source":     {TopicPayments, Envelope{Type: TypePaymentProcessed}, false},
		"unrouted type": {TopicPayments, Envelope{Type: "Bogus", Source: SourcePayment}, false},
	} {
		t.Run(name, func(t *testing.T) {
			err := routes.Check(tc.topic, tc.e)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrUnexpectedSource)) {
				t.Errorf("Check(%s, %s from %q) = %v", tc.topic, tc.e.Type, tc.e.Source, err)
			}
		})
	}
}

func TestParseOrderID(t *testing.T) {
	for in, ok := range map[string]bool{
		"0193a5c0-0000-7000-8000-000000000001":      true,
		"0193A5C0-0000-7000-8000-000000000001":      true,
		"0193a5c00000700080000000000000001":         false,
		"{0193a5c0-0000-7000-8000-000000000001}":    false,
		"urn:uuid:0193a5c0-0000-7000-8000-00000001": false,
		"":    false,
		"mug": false,
	} {
		id, err := ParseOrderID(in)
		if ok != (err == nil) || (err != nil && !errors.Is(err, ErrMalformed)) {
			t.Errorf("ParseOrderID(%q) = %v, %v", in, id, err)
		}
	}
}

// docs/flows.md's table of events must say what Saga says: who emits each
// type, on which topic.
func TestFlowsDocumentMatchesRoutes(t *testing.T) {
	doc, err := os.ReadFile("../../docs/flows.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (\\w+) \\| (\\w+) \\(`([a-z.]+)`")
	seen := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		typ, source, topic := m[1], m[2], m[3]
		want, ok := RouteOf(typ)
		if !ok {
			t.Errorf("docs/flows.md lists %s, which has no route", typ)
			continue
		}
		if want != (Route{Topic: topic, Source: source}) {
			t.Errorf("docs/flows.md: %s emitted by %s on %s; routes.go says %s on %s", typ, source, topic, want.Source, want.Topic)
		}
		seen[typ] = true
	}
	for typ := range Saga() {
		if !seen[typ] {
			t.Errorf("docs/flows.md does not list %s", typ)
		}
	}
}

func TestOrderExpiredRoundTrip(t *testing.T) {
	deadline := time.Date(2026, 12, 2, 3, 4, 5, 600, time.UTC)
	expired := OrderExpired{OrderID: "0193a5c0-0000-7000-8000-000000000003", CustomerID: "c-1", Deadline: deadline}
	e, err := New(SourceOrder, expired)
	if err != nil {
		t.Fatal(err)
	}
	if err := Saga().Check(TopicOrders, e); err != nil {
		t.Fatal(err)
	}
	back, err := FromMessage(ToMessage(TopicOrders, e))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode[OrderExpired](back)
	if err != nil {
		t.Fatal(err)
	}
	if got.OrderID != expired.OrderID || got.CustomerID != "c-1" || !got.Deadline.Equal(deadline) {
		t.Errorf("OrderExpired round trip: %+v, want %+v", got, expired)
	}
	cancelled, err := New(SourceShipping, ShipmentCancelled{OrderID: expired.OrderID, Reason: ReasonTimedOut})
	if err != nil {
		t.Fatal(err)
	}
	if err := Saga().Check(TopicShipping, cancelled); err != nil || cancelled.Subject != expired.OrderID {
		t.Errorf("ShipmentCancelled: subject %q, check %v", cancelled.Subject, err)
	}
}

// The content-type header is compared as a media type: parameters and case
// do not change it, another type or structured mode is refused.
func TestFromMessageContentType(t *testing.T) {
	good, err := New(SourceShipping, OrderShipped{OrderID: "o-1", TrackingNumber: "T"})
	if err != nil {
		t.Fatal(err)
	}
	for ct, want := range map[string]error{
		"application/json":                nil,
		"application/json; charset=utf-8": nil,
		"Application/JSON":                nil,
		"application/xml":                 ErrUnsupportedContent,
		"application/cloudevents+json":    ErrUnsupportedContent,
		"application/json; =":             ErrUnsupportedContent,
	} {
		m := ToMessage(TopicShipping, good)
		for i := range m.Headers {
			if m.Headers[i].Key == HeaderContentType {
				m.Headers[i].Value = []byte(ct)
			}
		}
		if _, err := FromMessage(m); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("content-type %q: err %v, want %v", ct, err, want)
		}
	}
}

// Data that is JSON but no object (null) is malformed at every version,
// also where an upcaster reads it first (FuzzDecode's seed v1-OrderCreated-null
// made the v1 upcaster panic on its nil map).
func TestDecodeNotAnObject(t *testing.T) {
	for _, version := range []int{1, 2} {
		for _, data := range []string{`null`, `[]`, `"x"`, `7`} {
			e := Envelope{ID: "0193a5c0-0000-7000-8000-000000000005", Type: TypeOrderCreated, SchemaVersion: version,
				Source: SourceOrder, Subject: "o-1", Data: json.RawMessage(data)}
			if _, err := Decode[OrderCreated](e); !errors.Is(err, ErrMalformed) {
				t.Errorf("v%d %s: err %v, want ErrMalformed", version, data, err)
			}
		}
	}
}
