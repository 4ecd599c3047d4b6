package deadletter

import (
	"context"
	"errors"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/testenv"
)

// TestReadDeletedTopic: a topic deleted between the broker listing it and
// List reading it fails with UnknownTopicOrPartition, which List passes
// over when it reads every dead-letter topic.
func TestReadDeletedTopic(t *testing.T) {
	c, done := newClient(testenv.Kafka(t))
	defer done()
	gone := topicInfo{name: testenv.Name("gone") + ".dlq", partitions: 1}
	err := readTopic(context.Background(), c, gone, func(kafka.Message) { t.Error("a record of a topic that does not exist") })
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Fatalf("readTopic = %v, want UnknownTopicOrPartition", err)
	}
}
