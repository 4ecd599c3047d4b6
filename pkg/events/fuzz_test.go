package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
)

// The fuzz targets of the decoders of what arrives from Kafka. Their seed
// corpus is in testdata/fuzz/<target>; `go test` runs it as ordinary tests,
// `go test -run '^$' -fuzz '^FuzzFromMessage$' ./pkg/events/` explores.

// FuzzFromMessage reads a CloudEvents binary-mode message built from the
// fuzzed headers (an empty value leaves its header out), key and value.
// extra is more headers, one "name=value" a line, put before the others, so
// a duplicate of a ce_* header is the one Header finds. A message it refuses
// is refused with one of its sentinels; one it reads is a valid envelope
// that survives ToMessage and FromMessage unchanged.
func FuzzFromMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, key, value []byte, specVersion, id, typ, source, tm, subject, schemaVersion, correlationID, contentType, extra string) {
		m := kafka.Message{Key: key, Value: value}
		for _, line := range strings.Split(extra, "\n") {
			if name, v, ok := strings.Cut(line, "="); ok {
				m.Headers = append(m.Headers, kafka.Header{Key: name, Value: []byte(v)})
			}
		}
		for _, h := range []struct{ key, value string }{
			{HeaderSpecVersion, specVersion}, {HeaderID, id}, {HeaderType, typ}, {HeaderSource, source},
			{HeaderTime, tm}, {HeaderSubject, subject}, {HeaderSchemaVersion, schemaVersion},
			{HeaderCorrelationID, correlationID}, {HeaderContentType, contentType},
		} {
			if h.value != "" {
				m.Headers = append(m.Headers, kafka.Header{Key: h.key, Value: []byte(h.value)})
			}
		}

		e, err := FromMessage(m)
		if err != nil {
			if !errors.Is(err, ErrMissingHeader) && !errors.Is(err, ErrUnsupportedContent) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("FromMessage: %v: not one of its sentinel errors", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("FromMessage accepted an envelope that does not validate: %v", err)
		}
		if want := Header(m, HeaderSubject); want != "" && e.Subject != want || want == "" && e.Subject != string(key) {
			t.Errorf("subject %q: want the ce_subject header, else the key %q", e.Subject, key)
		}
		if !bytes.Equal(e.Data, value) {
			t.Errorf("data %q, want the message value %q", e.Data, value)
		}

		back, err := FromMessage(ToMessage(TopicOrders, e))
		if err != nil {
			t.Fatalf("FromMessage(ToMessage(e)) of an envelope it read: %v\n%+v", err, e)
		}
		if !back.Time.Equal(e.Time) {
			t.Errorf("time after a round trip %v, want %v", back.Time, e.Time)
		}
		back.Time = e.Time
		if !reflect.DeepEqual(back, e) {
			t.Errorf("round trip changed the envelope:\n got %+v\nwant %+v", back, e)
		}
	})
}

// decoders reads an envelope as each payload type, by event type.
var decoders = map[string]func(Envelope) (Payload, error){
	TypeOrderCreated:         decodeAs[OrderCreated],
	TypeOrderCancelled:       decodeAs[OrderCancelled],
	TypePaymentProcessed:     decodeAs[PaymentProcessed],
	TypePaymentFailed:        decodeAs[PaymentFailed],
	TypePaymentRefunded:      decodeAs[PaymentRefunded],
	TypeInventoryReserved:    decodeAs[InventoryReserved],
	TypeInventoryUnavailable: decodeAs[InventoryUnavailable],
	TypeProductUpdated:       decodeAs[ProductUpdated],
	TypeOrderShipped:         decodeAs[OrderShipped],
	TypeCustomerNotified:     decodeAs[CustomerNotified],
	TypeOrderExpired:         decodeAs[OrderExpired],
	TypeShipmentCancelled:    decodeAs[ShipmentCancelled],
}

func decodeAs[T Payload](e Envelope) (Payload, error) { return Decode[T](e) }

func TestDecodersCoverEverySchema(t *testing.T) {
	for typ := range schemas {
		if decoders[typ] == nil {
			t.Errorf("FuzzDecode has no decoder for %s", typ)
		}
	}
}

// FuzzDecode reads data of event type typ at schema version as every
// payload type. The wrong types refuse it with ErrUnexpectedType; its own
// type either refuses it with ErrUnknownVersion (ErrNewerVersion exactly
// when the version is above the current one) or ErrMalformed, or reads a
// payload with a subject that, encoded at the current version by New and
// decoded again, is the same payload.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, typ string, version int, data []byte) {
		// No subject on the envelope, so that any data can decode; the
		// envelope New makes again has the data's, which must then match.
		e := Envelope{ID: "0193a5c0-0000-7000-8000-000000000002", Type: typ, SchemaVersion: version,
			Source: "fuzz", Data: json.RawMessage(data)}
		for as, decode := range decoders {
			p, err := decode(e)
			if as != typ {
				if !errors.Is(err, ErrUnexpectedType) {
					t.Fatalf("%s read as %s: err %v, want ErrUnexpectedType", typ, as, err)
				}
				continue
			}
			current, _ := currentVersion(typ)
			if err != nil {
				switch {
				case errors.Is(err, ErrNewerVersion) != (version > current):
					t.Fatalf("%s v%d (current v%d): %v: ErrNewerVersion exactly when the version is above the current one", typ, version, current, err)
				case (version < 1 || version > current) != errors.Is(err, ErrUnknownVersion):
					t.Fatalf("%s v%d (current v%d): %v: ErrUnknownVersion exactly when the version is unknown", typ, version, current, err)
				case !errors.Is(err, ErrUnknownVersion) && !errors.Is(err, ErrMalformed):
					t.Fatalf("%s v%d: %v: neither ErrUnknownVersion nor ErrMalformed", typ, version, err)
				}
				continue
			}
			if version < 1 || version > current {
				t.Fatalf("%s v%d read, but this build knows 1 to %d", typ, version, current)
			}
			if p.Subject() == "" {
				t.Fatalf("%s v%d read with no subject", typ, version)
			}
			again, err := New(SourceOrder, p)
			if err != nil {
				t.Fatalf("New(%+v): %v", p, err)
			}
			if again.SchemaVersion != current || again.Subject != p.Subject() {
				t.Fatalf("New(%+v): version %d subject %q", p, again.SchemaVersion, again.Subject)
			}
			p2, err := decode(again)
			if err != nil {
				t.Fatalf("a payload it read does not decode once encoded again: %v\ndata %s", err, again.Data)
			}
			// Compared as JSON: a time's location is a pointer that
			// DeepEqual would tell apart.
			if a, b := mustJSON(t, p), mustJSON(t, p2); !bytes.Equal(a, b) {
				t.Fatalf("round trip changed the payload:\n got %s\nwant %s", b, a)
			}
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzParseOrderID: an order id it accepts is a UUID in canonical form, the
// input in lower case; anything else is ErrMalformed.
func FuzzParseOrderID(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseOrderID(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseOrderID(%q): %v, want ErrMalformed", s, err)
			}
			return
		}
		if id.String() != strings.ToLower(s) {
			t.Fatalf("ParseOrderID(%q) = %s: not the input in canonical form", s, id)
		}
	})
}
