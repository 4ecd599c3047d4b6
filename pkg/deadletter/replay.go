package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/consumer"
)

// Publisher writes messages to Kafka; the *kafka.Writer of broker.NewWriter
// is one.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Message is the message Replay writes for l: its original key and value,
// to its original topic, with its original headers (traceparent included,
// so the replay joins the order's trace) but none of the dlq.* ones, and
// the replay.* headers saying which letter it came from and how many times
// the message has been replayed. It fails with ErrNotReplayable when l does
// not say where it came from.
func Message(l Letter, now time.Time) (kafka.Message, error) {
	if l.Original == nil || l.Original.Topic == "" {
		return kafka.Message{}, fmt.Errorf("%w: %s has no %s header", ErrNotReplayable, l.Position, consumer.HeaderDLQOriginalTopic)
	}
	headers := make([]kafka.Header, 0, len(l.Headers)+3)
	for _, h := range l.Headers {
		if strings.HasPrefix(h.Key, "dlq.") || strings.HasPrefix(h.Key, "replay.") {
			continue
		}
		headers = append(headers, h)
	}
	headers = append(headers,
		kafka.Header{Key: HeaderReplayedFrom, Value: []byte(l.Position.String())},
		kafka.Header{Key: HeaderReplayCount, Value: []byte(strconv.Itoa(l.ReplayCount + 1))},
		kafka.Header{Key: HeaderReplayedAt, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	return kafka.Message{Topic: l.Original.Topic, Key: l.Key, Value: l.Value, Headers: headers}, nil
}

// Replay writes each letter's original message back to its original topic
// (see Message), all in one write. The partition is the one the key hashes
// to, as for the original (broker.NewWriter's balancer), so while the topic
// keeps its partition count the replay lands where the original was and
// stays in order with the order's other events. Nothing is written when a
// letter is not replayable (ErrNotReplayable).
//
// Every consumer group of the original topic receives the replay: the ones
// that applied the original skip it (their inbox knows its event id), the
// one that dead-lettered it applies it, and a second replay of the same
// letter is skipped by all of them.
func Replay(ctx context.Context, w Publisher, letters ...Letter) error {
	if len(letters) == 0 {
		return nil
	}
	now := time.Now()
	msgs := make([]kafka.Message, 0, len(letters))
	var problems []error
	for _, l := range letters {
		m, err := Message(l, now)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		msgs = append(msgs, m)
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("replay %d dead letters: %w", len(msgs), err)
	}
	return nil
}
