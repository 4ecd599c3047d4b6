package consumer

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/events"
)

// Decode reads e's payload as T. A payload that does not decode never will,
// so its error is permanent (the message is dead-lettered). The one
// exception is the consumer's, not Decode's: an error that also wraps
// events.ErrNewerVersion (a schema version newer than this build knows) is
// retried for Config.UnknownVersionWait first, since a newer build will read
// it.
func Decode[T events.Payload](e events.Envelope) (T, error) {
	p, err := events.Decode[T](e)
	if err != nil {
		return p, Permanent(err)
	}
	return p, nil
}

// DecodeOrder is Decode for the events of an order: it also reads the order
// id, the payload's subject, which must be a UUID in canonical form. Both
// errors are permanent.
func DecodeOrder[T events.Payload](e events.Envelope) (T, uuid.UUID, error) {
	p, err := Decode[T](e)
	if err != nil {
		return p, uuid.UUID{}, err
	}
	id, err := events.ParseOrderID(p.Subject())
	if err != nil {
		return p, uuid.UUID{}, Permanent(fmt.Errorf("%s %s: %w", e.Type, e.ID, err))
	}
	return p, id, nil
}
