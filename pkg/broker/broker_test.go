package broker_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// The writer's largest batch is one the broker takes: a message as large as
// the writer allows is accepted by a topic whose limit is the brokers'
// message.max.bytes (set on the topic, since the shared local broker may have
// been started with an older file), and one byte more is refused by the
// writer itself, before it reaches Kafka.
func TestWriterBatchFitsTheBrokersLimit(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := strings.ReplaceAll(testenv.Name("broker.size"), "_", ".")
	if _, err := broker.CreateTopics(ctx, brokers, broker.TopicSpec{
		Name: topic, Partitions: 1, ReplicationFactor: 1,
		Config: map[string]string{"max.message.bytes": strconv.Itoa(broker.MaxMessageBytes)},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.DeleteTopics(context.Background(), brokers, topic) })

	w := broker.NewWriter(brokers)
	defer w.Close()
	if w.BatchBytes != broker.MaxBatchBytes || w.BatchBytes >= broker.MaxMessageBytes {
		t.Fatalf("writer BatchBytes %d, want MaxBatchBytes %d below MaxMessageBytes %d", w.BatchBytes, broker.MaxBatchBytes, broker.MaxMessageBytes)
	}
	msg := func(size int) kafka.Message {
		m := kafka.Message{Topic: topic, Key: []byte("k"), Headers: []kafka.Header{{Key: "h", Value: []byte("v")}}}
		m.Value = bytes.Repeat([]byte("x"), size-broker.MessageSize(m))
		if broker.MessageSize(m) != size {
			t.Fatalf("MessageSize %d, want %d", broker.MessageSize(m), size)
		}
		return m
	}
	var err error
	testenv.WaitFor(t, 20*time.Second, "the largest message published", func() bool {
		err = w.WriteMessages(ctx, msg(broker.MaxBatchBytes))
		return err == nil
	})
	var tooLarge kafka.MessageTooLargeError
	if err := w.WriteMessages(ctx, msg(broker.MaxBatchBytes+64)); !errors.As(err, &tooLarge) {
		t.Fatalf("a message over MaxBatchBytes: %v, want kafka.MessageTooLargeError", err)
	}
}

func TestCreateTopicsAppliesTheSpecAndCheckTopicsReportsDifferences(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := strings.ReplaceAll(testenv.Name("broker.spec"), "_", ".")
	spec := broker.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1,
		Config: map[string]string{"retention.ms": "3600000"}}
	existing, err := broker.CreateTopics(ctx, brokers, spec)
	if err != nil || len(existing) != 0 {
		t.Fatalf("create: existing %v, %v", existing, err)
	}
	t.Cleanup(func() { _ = broker.DeleteTopics(context.Background(), brokers, topic) })

	existing, err = broker.CreateTopics(ctx, brokers, spec)
	if err != nil || len(existing) != 1 || existing[0] != topic {
		t.Fatalf("second create: existing %v, %v; want [%s]", existing, err, topic)
	}
	var diffs []string
	testenv.WaitFor(t, 10*time.Second, "the topic's settings readable", func() bool {
		diffs, err = broker.CheckTopics(ctx, brokers, spec)
		return err == nil && len(diffs) == 0
	})

	other := spec
	other.ReplicationFactor = 3
	other.Config = map[string]string{"retention.ms": "60000"}
	diffs, err = broker.CheckTopics(ctx, brokers, other)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(diffs, "; ")
	for _, want := range []string{"replication factor 1, want 3", "retention.ms=3600000, want 60000"} {
		if !strings.Contains(got, want) {
			t.Errorf("differences %q lack %q", got, want)
		}
	}
}
