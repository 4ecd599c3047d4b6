package consumer

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/telemetry"
)

// Headers a dead-lettered message carries besides its original ones, so that
// someone can see why it failed and replay it where it came from.
const (
	HeaderDLQReason            = "dlq.reason" // one of the Reason* values
	HeaderDLQError             = "dlq.error"
	HeaderDLQOriginalTopic     = "dlq.original.topic"
	HeaderDLQOriginalPartition = "dlq.original.partition"
	HeaderDLQOriginalOffset    = "dlq.original.offset"
	HeaderDLQConsumerGroup     = "dlq.consumer.group"
	HeaderDLQFailedAt          = "dlq.failed.at" // RFC 3339, UTC
)

// Why a message was dead-lettered (the dlq.reason header and the reason
// label of consumer_dead_lettered_total).
const (
	ReasonDecode      = "decode"       // the envelope could not be read
	ReasonHandler     = "handler"      // the handler failed permanently
	ReasonMaxAttempts = "max_attempts" // the handler kept failing with unclassified errors
	// ReasonUnknownVersion: the event's schema version is newer than this
	// build knows, and stayed so for Config.UnknownVersionWait.
	ReasonUnknownVersion = "unknown_version"
	// ReasonUnexpectedSource: the event came on a topic its type does not
	// travel on, or from a service that does not produce it (events.Routes).
	ReasonUnexpectedSource = "unexpected_source"
)

// deadLetter writes msg, with its original key, value and headers, to the
// group's dead-letter topic. The write is retried until it succeeds, because
// committing the offset without it would lose the message. It returns an
// error only when ctx is done first.
func (c *Consumer) deadLetter(ctx context.Context, dlq Publisher, msg kafka.Message, eventType, reason string, cause error) error {
	headers := make([]kafka.Header, 0, len(msg.Headers)+7)
	for _, h := range msg.Headers {
		// A replayed dead letter that fails again gets fresh dlq.* headers,
		// not a second set that readers would have to tell apart.
		if !strings.HasPrefix(h.Key, "dlq.") {
			headers = append(headers, h)
		}
	}
	headers = append(headers,
		kafka.Header{Key: HeaderDLQReason, Value: []byte(reason)},
		kafka.Header{Key: HeaderDLQError, Value: []byte(cause.Error())},
		kafka.Header{Key: HeaderDLQOriginalTopic, Value: []byte(msg.Topic)},
		kafka.Header{Key: HeaderDLQOriginalPartition, Value: []byte(strconv.Itoa(msg.Partition))},
		kafka.Header{Key: HeaderDLQOriginalOffset, Value: []byte(strconv.FormatInt(msg.Offset, 10))},
		kafka.Header{Key: HeaderDLQConsumerGroup, Value: []byte(c.cfg.Group)},
		kafka.Header{Key: HeaderDLQFailedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	out := kafka.Message{Topic: c.dlqTopic, Key: msg.Key, Value: msg.Value, Headers: headers}

	for failures := 1; ; failures++ {
		err := dlq.WriteMessages(ctx, out)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := c.backoff(failures)
		c.log.WarnContext(ctx, "dead-letter write failed, retrying", telemetry.LogTopic, c.dlqTopic, telemetry.Err(err),
			telemetry.LogAttempt, failures, telemetry.LogBackoff, wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
	c.metrics.deadLettered.WithLabelValues(c.cfg.Group, eventType, reason).Inc()
	c.log.ErrorContext(ctx, "event dead-lettered", telemetry.LogReason, reason, telemetry.Err(cause), telemetry.LogEventType, eventType,
		telemetry.LogTopic, msg.Topic, telemetry.LogPartition, msg.Partition, telemetry.LogOffset, msg.Offset, "dead_letter_topic", c.dlqTopic)
	return nil
}
