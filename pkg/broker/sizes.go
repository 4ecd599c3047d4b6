package broker

import "github.com/segmentio/kafka-go"

// The sizes the producer and the broker must agree on. A produce request's
// record batch larger than the broker's message.max.bytes is refused as a
// whole (MESSAGE_TOO_LARGE) and would be refused again on every retry, so the
// writer never builds one: its BatchBytes stays below the broker's limit by
// the record batch's own header (61 bytes), which kafka-go's size estimate
// leaves out.
const (
	// MaxMessageBytes is message.max.bytes of every Sagashop broker
	// (tools/kafka/broker.properties, docker-compose.yml; tests check both):
	// Kafka's default, 1 MiB plus the 12 bytes of the log's own framing,
	// rounded to 1 MiB.
	MaxMessageBytes = 1 << 20
	// MaxBatchBytes is the writer's BatchBytes: the largest batch it sends to
	// one partition, and so the largest message it takes (kafka-go refuses a
	// larger one before sending anything, with kafka.MessageTooLargeError).
	MaxBatchBytes = MaxMessageBytes - batchHeadroom
	batchHeadroom = 1 << 10
)

// MessageSize is an upper bound of what kafka-go counts for m against the
// writer's BatchBytes: key, value, headers and the per-record framing. A
// message with MessageSize(m) <= MaxBatchBytes is never refused for its size.
func MessageSize(m kafka.Message) int {
	// kafka-go's estimate: 4 (length) + 1 (magic) + 1 (attributes) + 8
	// (timestamp) + 4+len(key) + 4+len(value), plus each header's key and
	// value with varint lengths (at most 5 bytes each) and the array's
	// varint length.
	n := 4 + 1 + 1 + 8 + 4 + len(m.Key) + 4 + len(m.Value) + 5
	for _, h := range m.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}
