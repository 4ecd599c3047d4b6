// Package events is the contract between Sagashop's services: the envelope
// every event travels in, the typed payload of each event of the order saga,
// the topics, and the mapping to Kafka messages (CloudEvents 1.0 binary mode).
//
// Guarantees a consumer may rely on: every event of one order carries the
// order id as subject, message key and correlation id, so Kafka keeps one
// order's events from one producer in order; an event's schema version is
// upcast to the current one on decoding, so a consumer only ever sees the
// current payload type.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Topics: one per producing service. Every message is keyed by order id,
// except catalog events, which are keyed by SKU.
const (
	TopicOrders    = "orders.events"
	TopicPayments  = "payments.events"
	TopicInventory = "inventory.events"
	TopicShipping  = "shipping.events"
	TopicEmail     = "email.events"
)

// Partitions is the partition count of every topic the project creates.
const Partitions = 3

// Topics lists every event topic of the system, sorted: those of Saga's
// routes.
func Topics() []string {
	routes := Saga()
	types := make([]string, 0, len(routes))
	for typ := range routes {
		types = append(types, typ)
	}
	topics, _ := routes.Topics(types...) // every type has a route
	return topics
}

// DeadLetterTopic is the dead-letter topic of a consumer group: messages the
// group could not process, with headers saying why and where they came from.
func DeadLetterTopic(group string) string { return group + ".dlq" }

// Errors returned by decoding; consumers treat all of them as permanent.
var (
	ErrMalformed          = errors.New("malformed event")
	ErrUnknownVersion     = errors.New("unknown schema version")
	ErrUnexpectedType     = errors.New("unexpected event type")
	ErrMissingHeader      = errors.New("missing cloudevents header")
	ErrUnsupportedContent = errors.New("unsupported content type")
)

// Envelope is one event with its metadata. Data holds the JSON payload at
// SchemaVersion; use Decode to read it as the current payload type.
type Envelope struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Source        string          `json:"source"`
	Subject       string          `json:"subject"`
	Time          time.Time       `json:"time"`
	CorrelationID string          `json:"correlation_id"`
	CausationID   string          `json:"causation_id,omitempty"`
	TraceParent   string          `json:"traceparent,omitempty"`
	TraceState    string          `json:"tracestate,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// Payload is the typed body of an event. Each payload type names its event
// type, current schema version and subject (the order id, or the SKU for
// catalog events).
type Payload interface {
	EventType() string
	Subject() string
}

// New wraps payload in a fresh envelope from source (the producing service).
// The correlation id is the subject: the order id ties the whole saga
// together. Use CausedBy to link it to the event that caused it.
func New(source string, payload Payload) (Envelope, error) {
	typ := payload.EventType()
	version, ok := currentVersion(typ)
	if !ok {
		return Envelope{}, fmt.Errorf("new event: %w: %q", ErrUnexpectedType, typ)
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("new event id: %w", err)
	}
	return Envelope{
		ID:            id.String(),
		Type:          typ,
		SchemaVersion: version,
		Source:        source,
		Subject:       payload.Subject(),
		Time:          time.Now().UTC().Truncate(time.Microsecond),
		CorrelationID: payload.Subject(),
		Data:          data,
	}, nil
}

// CausedBy returns e as caused by cause: same correlation id, and cause's id
// as causation id.
func (e Envelope) CausedBy(cause Envelope) Envelope {
	if cause.CorrelationID != "" {
		e.CorrelationID = cause.CorrelationID
	}
	e.CausationID = cause.ID
	return e
}

// Validate checks the metadata every event must have.
func (e Envelope) Validate() error {
	var problems []string
	if _, err := uuid.Parse(e.ID); err != nil {
		problems = append(problems, "id is not a UUID")
	}
	if e.Type == "" {
		problems = append(problems, "type is empty")
	}
	if e.SchemaVersion < 1 {
		problems = append(problems, "schema version < 1")
	}
	if e.Source == "" {
		problems = append(problems, "source is empty")
	}
	if e.Subject == "" {
		problems = append(problems, "subject is empty")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %v", ErrMalformed, problems)
	}
	return nil
}

// Decode reads e's data as the current version of payload type T, upcasting
// older schema versions first. It fails with ErrUnexpectedType when e is not
// a T, ErrUnknownVersion for a version this build does not know, and
// ErrMalformed when the data does not parse or is about another subject
// than the envelope.
func Decode[T Payload](e Envelope) (T, error) {
	var out T
	if e.Type != out.EventType() {
		return out, fmt.Errorf("decode %s as %s: %w", e.Type, out.EventType(), ErrUnexpectedType)
	}
	data, err := upcast(e.Type, e.SchemaVersion, e.Data)
	if err != nil {
		return out, fmt.Errorf("decode %s v%d: %w", e.Type, e.SchemaVersion, err)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("decode %s v%d: %w: %v", e.Type, e.SchemaVersion, ErrMalformed, err)
	}
	if out.Subject() == "" {
		return out, fmt.Errorf("decode %s v%d: %w: no subject in data", e.Type, e.SchemaVersion, ErrMalformed)
	}
	// The envelope's subject is the message key, the partition and so the
	// order of the events of one order: data about another subject would
	// be applied out of that order.
	if e.Subject != "" && out.Subject() != e.Subject {
		return out, fmt.Errorf("decode %s v%d: %w: data about %.64q in an event about %.64q", e.Type, e.SchemaVersion, ErrMalformed, out.Subject(), e.Subject)
	}
	return out, nil
}
