// Package broker holds the Kafka settings every Sagashop service shares, so
// that none of kafka-go's risky defaults (no acks, round-robin partitioning,
// a one-second batch timeout) reaches production by accident. It also creates
// the project's topics: the broker runs with automatic topic creation off.
package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// NewWriter returns a producer for any topic (the topic is set per message):
// acknowledged by all in-sync replicas, partitioned by the hash of the key
// (the order id, so one order's events stay in order). Retries are left to
// the caller (the outbox relay), so a failed batch is retried whole and never
// reordered behind a later one.
//
// Its produce batches are at most BatchBytes, MaxBatchBytes: a batch the
// broker would refuse (message.max.bytes, MaxMessageBytes) is never built.
//
// Its callers hand it whole batches (a relay round, one dead letter), so it
// waits for nothing more: kafka-go appends one call's messages for a
// partition under that partition's lock and flushes the batch only once the
// timer fires and the lock is free, so a timeout of a microsecond still sends
// each call's share of a partition as one produce request, at once. With the
// former 5 ms every hop of an order paid 5 ms (docs/BENCHMARKS.md: one
// event's hop through an idle relay p50 8.5 → 2.4–3.1 ms, backlog drain
// 17,600 → 22,400 events/s).
func NewWriter(brokers []string) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           time.Microsecond,
		BatchSize:              1000,
		BatchBytes:             MaxBatchBytes,
		MaxAttempts:            1,
		WriteTimeout:           10 * time.Second,
		ReadTimeout:            10 * time.Second,
		AllowAutoTopicCreation: false,
		// A transport of its own: kafka-go's shared one caches topic metadata
		// (a topic created after the first write stays unknown for seconds)
		// and connections a broker restart has broken.
		Transport: &kafka.Transport{},
	}
}

// EnsureTopics creates the topics that do not exist yet, each with
// partitions partitions, replication factor 1 and the broker's defaults
// otherwise: what tests and tools on the single-node stack need. Services
// create theirs with CreateTopics, from their configuration. Topics that
// exist are left as they are.
func EnsureTopics(ctx context.Context, brokers []string, partitions int, topics ...string) error {
	specs := make([]TopicSpec, len(topics))
	for i, t := range topics {
		specs[i] = TopicSpec{Name: t, Partitions: partitions, ReplicationFactor: 1}
	}
	_, err := CreateTopics(ctx, brokers, specs...)
	return err
}

// DeleteTopics deletes topics; tests use it to clean up.
func DeleteTopics(ctx context.Context, brokers []string, topics ...string) error {
	client, done := newClient(brokers, 10*time.Second)
	defer done()
	resp, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("delete topics %v: %w", topics, err)
	}
	var errs []error
	for topic, err := range resp.Errors {
		if err != nil {
			errs = append(errs, fmt.Errorf("delete topic %s: %w", topic, err))
		}
	}
	return errors.Join(errs...)
}

// Ping checks that a broker answers a metadata request: the readiness probe.
func Ping(ctx context.Context, brokers []string) error {
	client, done := newClient(brokers, 2*time.Second)
	defer done()
	if _, err := client.Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
		var nerr net.Error
		if errors.As(err, &nerr) {
			return fmt.Errorf("kafka %v unreachable: %w", brokers, err)
		}
		return fmt.Errorf("kafka metadata: %w", err)
	}
	return nil
}

// newClient returns an admin client with a transport of its own: kafka-go's
// shared default transport keeps connections that a broker restart has
// broken, and the next request on them fails.
func newClient(brokers []string, timeout time.Duration) (*kafka.Client, func()) {
	tr := &kafka.Transport{DialTimeout: timeout}
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: timeout, Transport: tr}, tr.CloseIdleConnections
}

// Unreachable reports whether err is one of not reaching Kafka, or of a
// broker not ready yet: what waiting may cure. Kafka's answers that say no
// for good (an invalid replication factor, an authorization refused) are
// not.
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return kerr.Temporary() || kerr == kafka.BrokerNotAvailable
	}
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED)
}
