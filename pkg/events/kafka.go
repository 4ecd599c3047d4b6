package events

import (
	"fmt"
	"mime"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// CloudEvents 1.0 Kafka protocol binding, binary content mode: the metadata
// travels in ce_* headers, the message value is the JSON data, the key is the
// subject (the order id). W3C trace context rides in traceparent/tracestate.
const (
	HeaderSpecVersion   = "ce_specversion"
	HeaderID            = "ce_id"
	HeaderType          = "ce_type"
	HeaderSource        = "ce_source"
	HeaderTime          = "ce_time"
	HeaderSubject       = "ce_subject"
	HeaderSchemaVersion = "ce_schemaversion" // extension attribute
	HeaderCorrelationID = "ce_correlationid" // extension attribute
	HeaderCausationID   = "ce_causationid"   // extension attribute
	HeaderContentType   = "content-type"
	HeaderTraceParent   = "traceparent"
	HeaderTraceState    = "tracestate"

	specVersion = "1.0"
	contentType = "application/json"
)

// ToMessage maps e to a Kafka message for topic.
func ToMessage(topic string, e Envelope) kafka.Message {
	h := []kafka.Header{
		{Key: HeaderSpecVersion, Value: []byte(specVersion)},
		{Key: HeaderID, Value: []byte(e.ID)},
		{Key: HeaderType, Value: []byte(e.Type)},
		{Key: HeaderSource, Value: []byte(e.Source)},
		{Key: HeaderTime, Value: []byte(e.Time.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderSubject, Value: []byte(e.Subject)},
		{Key: HeaderSchemaVersion, Value: []byte(strconv.Itoa(e.SchemaVersion))},
		{Key: HeaderCorrelationID, Value: []byte(e.CorrelationID)},
		{Key: HeaderContentType, Value: []byte(contentType)},
	}
	if e.CausationID != "" {
		h = append(h, kafka.Header{Key: HeaderCausationID, Value: []byte(e.CausationID)})
	}
	if e.TraceParent != "" {
		h = append(h, kafka.Header{Key: HeaderTraceParent, Value: []byte(e.TraceParent)})
	}
	if e.TraceState != "" {
		h = append(h, kafka.Header{Key: HeaderTraceState, Value: []byte(e.TraceState)})
	}
	return kafka.Message{Topic: topic, Key: []byte(e.Subject), Value: e.Data, Headers: h}
}

// Header returns the value of the first header named key, or "".
func Header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// FromMessage reads the envelope of a CloudEvents binary-mode message. It
// fails with ErrMissingHeader, ErrUnsupportedContent or ErrMalformed (also
// for a key that is not the ce_subject); all are permanent: the same bytes
// never decode later.
func FromMessage(m kafka.Message) (Envelope, error) {
	for _, k := range []string{HeaderSpecVersion, HeaderID, HeaderType, HeaderSource} {
		if Header(m, k) == "" {
			return Envelope{}, fmt.Errorf("%w: %s", ErrMissingHeader, k)
		}
	}
	if v := Header(m, HeaderSpecVersion); v != specVersion {
		return Envelope{}, fmt.Errorf("%w: specversion %q", ErrMalformed, v)
	}
	if ct := Header(m, HeaderContentType); ct != "" {
		// Parameters (charset=utf-8) and case do not change the media type.
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != contentType {
			return Envelope{}, fmt.Errorf("%w: %.64q", ErrUnsupportedContent, ct)
		}
	}
	e := Envelope{
		ID:            Header(m, HeaderID),
		Type:          Header(m, HeaderType),
		Source:        Header(m, HeaderSource),
		Subject:       Header(m, HeaderSubject),
		CorrelationID: Header(m, HeaderCorrelationID),
		CausationID:   Header(m, HeaderCausationID),
		TraceParent:   Header(m, HeaderTraceParent),
		TraceState:    Header(m, HeaderTraceState),
		Data:          m.Value,
		SchemaVersion: 1,
	}
	switch {
	case e.Subject == "":
		e.Subject = string(m.Key)
	case len(m.Key) > 0 && string(m.Key) != e.Subject:
		// The key chose the partition: an event keyed by something else
		// than its subject travels outside its subject's order.
		return Envelope{}, fmt.Errorf("%w: key %.64q is not the subject %.64q", ErrMalformed, m.Key, e.Subject)
	}
	if v := Header(m, HeaderSchemaVersion); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: schema version %q", ErrMalformed, v)
		}
		e.SchemaVersion = n
	}
	if t := Header(m, HeaderTime); t != "" {
		ts, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: time %q", ErrMalformed, t)
		}
		e.Time = ts
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}
