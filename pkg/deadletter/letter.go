// Package deadletter reads, replays and watches the consumers' dead-letter
// topics (<group>.dlq, see pkg/consumer): the one copy of the logic behind
// `sagashopctl dlq` and anything else that shows or replays dead letters.
//
//   - List reads dead-letter topics from their start to their end as it was
//     when List began (the high watermark), without a consumer group, and
//     returns what it found, filtered, one letter per Origin: the consumer
//     writes a dead letter before its offset is committed, so a crash, a
//     broker restart or a rebalance in between redelivers the message and it
//     is dead-lettered again (at-least-once, inherent to a consumer that is
//     not transactional). The copies are one letter, listed once with
//     Copies. A record without the dlq.* headers is listed with what is
//     known, never dropped.
//   - Replay writes a dead letter's original message (key, value, original
//     headers, traceparent) back to its original topic, marked as a replay.
//     Replaying twice changes nothing: every consumer's inbox skips an event
//     id it has already applied, and a replay that fails again is
//     dead-lettered again with fresh dlq.* headers.
//   - Watch consumes every dead-letter topic in a consumer group of its own,
//     including topics created after it started, and hands each letter to a
//     handler, committing only after the handler succeeded (at-least-once:
//     the handler must be idempotent, e.g. Record, keyed by the letter's
//     origin, which records the copies of a letter as one).
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

// Headers a replay adds to the original message. They are not dlq.* headers
// on purpose: the consumer strips dlq.* headers when it dead-letters a
// message again, and a replay that fails again must still say how often it
// was replayed.
const (
	HeaderReplayedFrom = "replay.from"  // the dead letter's Position
	HeaderReplayCount  = "replay.count" // 1 for the first replay of a message
	HeaderReplayedAt   = "replay.at"    // RFC 3339, UTC
)

// maxReplayCount bounds the replay.count header Decode reads: a larger one
// is reported in Problems and read as 0.
const maxReplayCount = math.MaxInt32

// suffix ends the name of every dead-letter topic (events.DeadLetterTopic).
func suffix() string { return events.DeadLetterTopic("") }

// IsTopic reports whether topic is a dead-letter topic.
func IsTopic(topic string) bool {
	return len(topic) > len(suffix()) && strings.HasSuffix(topic, suffix())
}

// Errors callers branch on.
var (
	// ErrInvalid: a position, filter or time that cannot be used.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: no dead-letter topic for a group, or no record at a
	// position.
	ErrNotFound = errors.New("not found")
	// ErrNotReplayable: the letter does not say where it came from (no
	// dlq.original.topic header), so it cannot be put back.
	ErrNotReplayable = errors.New("not replayable")
)

// Position is where a record lies in Kafka: topic, partition, offset.
type Position struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

// String is the position as ParsePosition reads it: topic/partition/offset.
func (p Position) String() string {
	return p.Topic + "/" + strconv.Itoa(p.Partition) + "/" + strconv.FormatInt(p.Offset, 10)
}

// ParsePosition reads "topic/partition/offset" (Kafka topic names cannot
// contain a slash). It fails with ErrInvalid.
func ParsePosition(s string) (Position, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] == "" {
		return Position{}, fmt.Errorf("%w position %q: want topic/partition/offset", ErrInvalid, s)
	}
	part, err := strconv.Atoi(parts[1])
	if err != nil || part < 0 {
		return Position{}, fmt.Errorf("%w position %q: partition %q is not a number >= 0", ErrInvalid, s, parts[1])
	}
	off, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || off < 0 {
		return Position{}, fmt.Errorf("%w position %q: offset %q is not a number >= 0", ErrInvalid, s, parts[2])
	}
	return Position{Topic: parts[0], Partition: part, Offset: off}, nil
}

// Letter is one dead-lettered message, decoded. The dlq.* fields are empty
// (and Problems says so) when the record lacks them; the event fields are
// empty when the original message lacked its ce_* headers.
type Letter struct {
	Position Position  `json:"position"` // in the dead-letter topic
	Time     time.Time `json:"time"`     // the dead-letter record's timestamp

	Group    string    `json:"group"`  // dlq.consumer.group, else the topic's name without .dlq
	Reason   string    `json:"reason"` // consumer.Reason*
	Error    string    `json:"error"`
	Original *Position `json:"original,omitempty"` // where the message was consumed from
	FailedAt time.Time `json:"failed_at"`          // zero when the header is missing or unreadable

	EventID     string    `json:"event_id,omitempty"`
	EventType   string    `json:"event_type,omitempty"`
	OrderID     string    `json:"order_id,omitempty"` // ce_subject, else the key
	EventSource string    `json:"event_source,omitempty"`
	EventTime   time.Time `json:"event_time,omitzero"`
	TraceID     string    `json:"trace_id,omitempty"` // from traceparent

	ReplayCount  int    `json:"replay_count"`            // replays of this message before it was dead-lettered (this time)
	ReplayedFrom string `json:"replayed_from,omitempty"` // the letter the last replay came from

	Key     []byte         `json:"key"`
	Value   []byte         `json:"value"`
	Headers []kafka.Header `json:"headers"` // all of them, dlq.* included, as recorded

	// Problems lists what is missing or unreadable in the dlq.* headers;
	// empty for a letter the consumer wrote.
	Problems []string `json:"problems,omitempty"`

	// Copies is how many records List found of this letter (the same
	// Origin): 1, or more for a message dead-lettered again after a
	// redelivery. Position is the oldest failure's, Duplicates the others',
	// oldest failure first. Decode and Get leave both empty: they read one
	// record.
	Copies     int        `json:"copies,omitempty"`
	Duplicates []Position `json:"duplicates,omitempty"`
}

// Origin is what makes a dead letter one: the consumer group that
// dead-lettered a message and where that message lay. Copies of a letter
// (the message dead-lettered again after a redelivery) share it; a replay
// that fails again has an origin of its own (the replay's offset).
type Origin struct {
	Group string `json:"group"`
	Position
}

// Origin returns l's origin: its group and its dlq.original.* position. A
// letter that does not say where it came from, completely and readably, is
// its own origin (its group and its own position), and ok is false.
func (l Letter) Origin() (o Origin, ok bool) {
	o = Origin{Group: l.Group, Position: l.Position}
	if l.Original == nil || l.Original.Topic == "" {
		return o, false
	}
	// Decode reads unreadable partitions and offsets as 0: those letters
	// must not be taken for copies of one another. Nor can a partition
	// Kafka cannot have (an int32 >= 0) or a negative offset say where a
	// message lay.
	if p, err := strconv.ParseInt(l.Header(consumer.HeaderDLQOriginalPartition), 10, 32); err != nil || p < 0 {
		return o, false
	}
	if off, err := strconv.ParseInt(l.Header(consumer.HeaderDLQOriginalOffset), 10, 64); err != nil || off < 0 {
		return o, false
	}
	o.Position = *l.Original
	return o, true
}

// Distinct returns letters with the copies of each letter (the same Origin)
// folded into the first of them, which keeps its place and gets Copies and
// Duplicates; every other letter has Copies 1.
func Distinct(letters []Letter) []Letter {
	out := make([]Letter, 0, len(letters))
	at := make(map[Origin]int, len(letters))
	for _, l := range letters {
		o, _ := l.Origin()
		if i, seen := at[o]; seen {
			out[i].Copies++
			out[i].Duplicates = append(out[i].Duplicates, l.Position)
			continue
		}
		at[o] = len(out)
		l.Copies, l.Duplicates = 1, nil
		out = append(out, l)
	}
	return out
}

// Decode reads a record of a dead-letter topic. It never fails: what cannot
// be read is listed in Problems.
func Decode(m kafka.Message) Letter {
	l := Letter{
		Position:  Position{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset},
		Time:      m.Time,
		Group:     events.Header(m, consumer.HeaderDLQConsumerGroup),
		Reason:    events.Header(m, consumer.HeaderDLQReason),
		Error:     events.Header(m, consumer.HeaderDLQError),
		EventID:   events.Header(m, events.HeaderID),
		EventType: events.Header(m, events.HeaderType),
		OrderID:   events.Header(m, events.HeaderSubject),

		EventSource:  events.Header(m, events.HeaderSource),
		ReplayedFrom: events.Header(m, HeaderReplayedFrom),
		Key:          m.Key,
		Value:        m.Value,
		Headers:      m.Headers,
	}
	missing := func(h string) { l.Problems = append(l.Problems, "no "+h+" header") }
	if l.Group == "" {
		missing(consumer.HeaderDLQConsumerGroup)
		l.Group = strings.TrimSuffix(m.Topic, suffix())
	}
	if l.Reason == "" {
		missing(consumer.HeaderDLQReason)
	}
	if l.OrderID == "" {
		l.OrderID = string(m.Key)
	}
	if t := events.Header(m, events.HeaderTime); t != "" {
		l.EventTime, _ = time.Parse(time.RFC3339Nano, t) // an unreadable one is the consumer's to report
	}
	if tp := events.Header(m, events.HeaderTraceParent); tp != "" {
		carrier := propagation.MapCarrier{events.HeaderTraceParent: tp}
		if sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier)); sc.IsValid() {
			l.TraceID = sc.TraceID().String()
		}
	}
	switch v := events.Header(m, consumer.HeaderDLQFailedAt); v {
	case "":
		missing(consumer.HeaderDLQFailedAt)
	default:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			l.Problems = append(l.Problems, fmt.Sprintf("%s %q is not an RFC 3339 time", consumer.HeaderDLQFailedAt, v))
		}
		l.FailedAt = t
	}
	if v := events.Header(m, HeaderReplayCount); v != "" {
		// Atoi returns the nearest int on overflow; a count of maxReplayCount
		// or more is a forged header, not a history (and would overflow the
		// next replay's count and order_dead_letters.replay_count).
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n >= maxReplayCount {
			l.Problems = append(l.Problems, fmt.Sprintf("%.32s %.64q is not a count from 0 to %d", HeaderReplayCount, v, maxReplayCount-1))
			n = 0
		}
		l.ReplayCount = n
	}
	topic := events.Header(m, consumer.HeaderDLQOriginalTopic)
	if topic == "" {
		missing(consumer.HeaderDLQOriginalTopic)
		return l
	}
	orig := Position{Topic: topic}
	var err error
	if orig.Partition, err = strconv.Atoi(events.Header(m, consumer.HeaderDLQOriginalPartition)); err != nil {
		l.Problems = append(l.Problems, "no readable "+consumer.HeaderDLQOriginalPartition+" header")
	}
	if orig.Offset, err = strconv.ParseInt(events.Header(m, consumer.HeaderDLQOriginalOffset), 10, 64); err != nil {
		l.Problems = append(l.Problems, "no readable "+consumer.HeaderDLQOriginalOffset+" header")
	}
	l.Original = &orig
	return l
}

// Header returns the value of the letter's first header named key, or "".
func (l Letter) Header(key string) string {
	return events.Header(kafka.Message{Headers: l.Headers}, key)
}

// Filter selects dead letters; its zero value selects all of them. Every set
// field must match.
type Filter struct {
	Group   string    // the consumer group (only its topic, <group>.dlq, is read)
	Type    string    // the event type (ce_type)
	Reason  string    // dlq.reason
	OrderID string    // ce_subject, else the key
	Since   time.Time // failed at or after (a letter without failed_at does not match)
	Until   time.Time // failed before
}

// Match reports whether l passes f.
func (f Filter) Match(l Letter) bool {
	switch {
	case f.Group != "" && l.Group != f.Group,
		f.Type != "" && l.EventType != f.Type,
		f.Reason != "" && l.Reason != f.Reason,
		f.OrderID != "" && l.OrderID != f.OrderID:
		return false
	case !f.Since.IsZero() && (l.FailedAt.IsZero() || l.FailedAt.Before(f.Since)),
		!f.Until.IsZero() && (l.FailedAt.IsZero() || !l.FailedAt.Before(f.Until)):
		return false
	}
	return true
}

// Validate reports a filter that can match nothing: Until not after Since.
func (f Filter) Validate() error {
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return fmt.Errorf("%w filter: until %s is not after since %s", ErrInvalid, f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	return nil
}
