package deadletter_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/deadletter"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// The fuzz targets of what a dead-letter topic holds: anyone who can write
// to the broker can put a record there, and the consumer copies the
// original message's headers, whatever they were, into its letter. Their
// seed corpus is in testdata/fuzz/<target>; `go test` runs it as ordinary
// tests, `go test -run '^$' -fuzz '^FuzzDecode$' ./pkg/deadletter/` explores.

// letterMessage is the dead-letter record the fuzz arguments describe: an
// empty value leaves its header out; extra is more headers, one
// "name=value" a line, put first, so a duplicate is the one read.
func letterMessage(offset int64, key, value []byte, group, reason, errText, origTopic, origPartition, origOffset,
	failedAt, replayCount, subject, ceID, ceType, traceParent, extra string) kafka.Message {
	m := kafka.Message{Topic: "fuzz.dlq", Partition: 1, Offset: offset, Key: key, Value: value}
	for _, line := range strings.Split(extra, "\n") {
		if name, v, ok := strings.Cut(line, "="); ok {
			m.Headers = append(m.Headers, kafka.Header{Key: name, Value: []byte(v)})
		}
	}
	for _, h := range []struct{ key, value string }{
		{events.HeaderID, ceID}, {events.HeaderType, ceType}, {events.HeaderSubject, subject},
		{events.HeaderTraceParent, traceParent}, {deadletter.HeaderReplayCount, replayCount},
		{consumer.HeaderDLQReason, reason}, {consumer.HeaderDLQError, errText},
		{consumer.HeaderDLQOriginalTopic, origTopic}, {consumer.HeaderDLQOriginalPartition, origPartition},
		{consumer.HeaderDLQOriginalOffset, origOffset}, {consumer.HeaderDLQConsumerGroup, group},
		{consumer.HeaderDLQFailedAt, failedAt},
	} {
		if h.value != "" {
			m.Headers = append(m.Headers, kafka.Header{Key: h.key, Value: []byte(h.value)})
		}
	}
	return m
}

// FuzzDecode: Decode never fails, and what it says holds: a letter without
// problems has a group, a reason, a failure time and an origin; the order
// id is ce_subject, else the key; the replay count is never negative. The
// message Replay would write for it is refused with ErrNotReplayable
// exactly when it has no origin, and otherwise goes to the origin with the
// letter's key and value, its headers but no dlq.* or replay.* ones, and a
// replay count one higher, which decoding the message back reads.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, key, value []byte, group, reason, errText, origTopic, origPartition, origOffset,
		failedAt, replayCount, subject, ceID, ceType, traceParent, extra string) {
		m := letterMessage(42, key, value, group, reason, errText, origTopic, origPartition, origOffset,
			failedAt, replayCount, subject, ceID, ceType, traceParent, extra)
		l := deadletter.Decode(m)

		if len(l.Problems) == 0 && (l.Group == "" || l.Reason == "" || l.FailedAt.IsZero() || l.Original == nil) {
			t.Fatalf("a letter without problems lacks what a consumer writes: %+v", l)
		}
		if want := events.Header(m, events.HeaderSubject); want != "" && l.OrderID != want || want == "" && l.OrderID != string(key) {
			t.Fatalf("order id %q: want ce_subject, else the key %q", l.OrderID, key)
		}
		if l.ReplayCount < 0 {
			t.Fatalf("replay count %d", l.ReplayCount)
		}
		if l.Original != nil && l.Original.Topic != events.Header(m, consumer.HeaderDLQOriginalTopic) {
			t.Fatalf("original topic %q, header %q", l.Original.Topic, events.Header(m, consumer.HeaderDLQOriginalTopic))
		}

		replay, err := deadletter.Message(l, time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC))
		if l.Original == nil {
			if !errors.Is(err, deadletter.ErrNotReplayable) {
				t.Fatalf("a letter without origin: Message err %v, want ErrNotReplayable", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Message: %v", err)
		}
		if replay.Topic != l.Original.Topic || string(replay.Key) != string(l.Key) || string(replay.Value) != string(l.Value) {
			t.Fatalf("replay to %q key %q value %q, want the letter's origin, key and value", replay.Topic, replay.Key, replay.Value)
		}
		var kept []kafka.Header
		for _, h := range m.Headers {
			if !strings.HasPrefix(h.Key, "dlq.") && !strings.HasPrefix(h.Key, "replay.") {
				kept = append(kept, h)
			}
		}
		if len(replay.Headers) != len(kept)+3 {
			t.Fatalf("replay has %d headers, want the %d original ones and 3 replay.* ones", len(replay.Headers), len(kept))
		}
		for i, h := range kept {
			if replay.Headers[i].Key != h.Key || string(replay.Headers[i].Value) != string(h.Value) {
				t.Fatalf("replay header %d is %q=%q, want %q=%q", i, replay.Headers[i].Key, replay.Headers[i].Value, h.Key, h.Value)
			}
		}
		again := deadletter.Decode(replay)
		if again.ReplayCount != l.ReplayCount+1 || again.ReplayedFrom != l.Position.String() {
			t.Fatalf("the replay reads as replay %d from %q, want %d from %q", again.ReplayCount, again.ReplayedFrom, l.ReplayCount+1, l.Position)
		}
	})
}

// FuzzRecord records what Decode reads into order_dead_letters of the real
// PostgreSQL, as the order service's dead-letter watch does: whatever the
// headers hold, a letter about an order (its order id parses as a UUID) is
// recorded without an error, since the watch retries a failed one forever
// and would stall behind it, and recording it again adds nothing: one row
// holds its position, its own or, when an earlier letter has its origin,
// that letter's (among its copies). What was stored is the letter's text,
// as valid UTF-8.
func FuzzRecord(f *testing.F) {
	pool, _ := testenv.Postgres(f)
	if _, err := pool.Exec(context.Background(), deadletter.Schema); err != nil {
		f.Fatal(err)
	}
	var offset atomic.Int64
	f.Fuzz(func(t *testing.T, key, value []byte, group, reason, errText, origTopic, origPartition, origOffset,
		failedAt, replayCount, subject, ceID, ceType, traceParent, extra string) {
		m := letterMessage(offset.Add(1), key, value, group, reason, errText, origTopic, origPartition, origOffset,
			failedAt, replayCount, subject, ceID, ceType, traceParent, extra)
		l := deadletter.Decode(m)
		ctx := context.Background()
		_, parseErr := uuid.Parse(l.OrderID)

		recorded, err := deadletter.Record(ctx, pool, l)
		if err != nil {
			t.Fatalf("Record: %v\nletter %+v", err, l)
		}
		if recorded != (parseErr == nil) {
			t.Fatalf("recorded %v for order id %q", recorded, l.OrderID)
		}
		if !recorded {
			return
		}
		if again, err := deadletter.Record(ctx, pool, l); err != nil || !again {
			t.Fatalf("Record again: %v, %v", again, err)
		}
		var n int
		var own bool
		var storedGroup, storedErr, storedID *string
		if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(bool_or((dlq_topic, dlq_partition, dlq_offset) = ($1, $2, $3)), false),
			min(consumer_group), min(error), min(event_id)
			FROM order_dead_letters WHERE $4 = ANY (copies)`,
			l.Position.Topic, l.Position.Partition, l.Position.Offset, l.Position.String()).Scan(&n, &own, &storedGroup, &storedErr, &storedID); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%d rows for the letter at %s, want 1", n, l.Position)
		}
		if o, _ := l.Origin(); !own && o.Position == l.Position {
			t.Fatalf("the letter at %s, its own origin, is recorded as a copy", l.Position)
		}
		if !own {
			return // a copy of an earlier letter, whose text the row holds
		}
		for _, s := range []struct{ stored, letter string }{{*storedGroup, l.Group}, {*storedErr, l.Error}, {*storedID, l.EventID}} {
			if !utf8.ValidString(s.stored) {
				t.Fatalf("stored %q: not UTF-8", s.stored)
			}
			if utf8.ValidString(s.letter) && !strings.ContainsRune(s.letter, 0) && s.stored != s.letter {
				t.Fatalf("stored %q, the letter has %q", s.stored, s.letter)
			}
		}
	})
}

// FuzzParsePosition: a position it reads is written back by String as one
// that reads the same; what it refuses is ErrInvalid.
func FuzzParsePosition(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		p, err := deadletter.ParsePosition(s)
		if err != nil {
			if !errors.Is(err, deadletter.ErrInvalid) {
				t.Fatalf("ParsePosition(%q): %v, want ErrInvalid", s, err)
			}
			return
		}
		if p.Topic == "" || p.Partition < 0 || p.Offset < 0 {
			t.Fatalf("ParsePosition(%q) = %+v", s, p)
		}
		back, err := deadletter.ParsePosition(p.String())
		if err != nil || back != p {
			t.Fatalf("ParsePosition(%q) = %+v, but its String %q reads as %+v, %v", s, p, p.String(), back, err)
		}
	})
}
