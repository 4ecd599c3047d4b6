package consumer_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// FuzzDecodeOrder reads data of an order event type at schema version as
// the handlers do (DecodeOrder): every error is permanent, and still tells
// a newer schema version (retried for UnknownVersionWait) from the rest; a
// payload it reads has the order id as subject, in canonical form. The
// seed corpus is in testdata/fuzz/FuzzDecodeOrder; events.FuzzDecode covers
// every type and version, this the order id on top.
func FuzzDecodeOrder(f *testing.F) {
	f.Fuzz(func(t *testing.T, created bool, version int, data []byte) {
		e := events.Envelope{ID: "0193a5c0-0000-7000-8000-000000000002", Type: events.TypeOrderShipped, SchemaVersion: version,
			Source: events.SourceShipping, Data: json.RawMessage(data)} // no subject: any data's order id may decode
		decode := func(e events.Envelope) (string, string, error) {
			p, id, err := consumer.DecodeOrder[events.OrderShipped](e)
			return p.OrderID, id.String(), err
		}
		current := 1 // OrderShipped's schema version, OrderCreated's is 2
		if created {
			current = 2
			e.Type, e.Source = events.TypeOrderCreated, events.SourceOrder
			decode = func(e events.Envelope) (string, string, error) {
				p, id, err := consumer.DecodeOrder[events.OrderCreated](e)
				return p.OrderID, id.String(), err
			}
		}
		subject, id, err := decode(e)
		if err != nil {
			if !errors.Is(err, consumer.ErrPermanent) {
				t.Fatalf("%s v%d: %v: not permanent", e.Type, version, err)
			}
			if !errors.Is(err, events.ErrMalformed) && !errors.Is(err, events.ErrUnknownVersion) {
				t.Fatalf("%s v%d: %v: neither ErrMalformed nor ErrUnknownVersion", e.Type, version, err)
			}
			if errors.Is(err, events.ErrNewerVersion) != (version > current) {
				t.Fatalf("%s v%d: %v: ErrNewerVersion exactly when the version is above the current one", e.Type, version, err)
			}
			return
		}
		if id != strings.ToLower(subject) || len(subject) != 36 {
			t.Fatalf("order id %s for subject %q", id, subject)
		}
	})
}
