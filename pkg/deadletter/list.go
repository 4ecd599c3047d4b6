package deadletter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/sagashop/sagashop/pkg/events"
)

// timeout bounds each request to the broker.
const timeout = 10 * time.Second

// List reads the dead-letter topics, from their first retained record to the
// end each partition had when List asked (so it terminates however fast
// letters arrive), and returns the letters that f matches, oldest failure
// first, each letter once (Distinct: the copies of a message dead-lettered
// again after a redelivery are one letter, with Copies and Duplicates). It reads only <f.Group>.dlq when f names a group, and then fails
// with ErrNotFound if that topic does not exist; otherwise every topic whose
// name ends in .dlq. It uses no consumer group and commits nothing.
func List(ctx context.Context, brokers []string, f Filter) ([]Letter, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	c, done := newClient(brokers)
	defer done()
	var only []string
	if f.Group != "" {
		only = []string{events.DeadLetterTopic(f.Group)}
	}
	topics, err := dlqTopics(ctx, c, only)
	if err != nil {
		return nil, err
	}
	var out []Letter
	for _, t := range topics {
		var found []Letter
		err := readTopic(ctx, c, t, func(m kafka.Message) {
			if l := Decode(m); f.Match(l) {
				found = append(found, l)
			}
		})
		if f.Group == "" && errors.Is(err, kafka.UnknownTopicOrPartition) {
			continue // deleted since the broker listed it
		}
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	slices.SortStableFunc(out, func(a, b Letter) int {
		if c := a.FailedAt.Compare(b.FailedAt); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.Position.Topic, b.Position.Topic), cmp.Compare(a.Position.Partition, b.Position.Partition),
			cmp.Compare(a.Position.Offset, b.Position.Offset))
	})
	return Distinct(out), nil
}

// Get reads the letter at p. It fails with ErrInvalid when p is not in a
// dead-letter topic, and with ErrNotFound when the topic,
// partition or offset does not exist (an offset past the end, or one the
// retention has already deleted).
func Get(ctx context.Context, brokers []string, p Position) (Letter, error) {
	if !IsTopic(p.Topic) {
		return Letter{}, fmt.Errorf("%w position %s: %s is not a dead-letter topic (<group>%s)", ErrInvalid, p, p.Topic, suffix())
	}
	c, done := newClient(brokers)
	defer done()
	topics, err := dlqTopics(ctx, c, []string{p.Topic})
	if err != nil {
		return Letter{}, err
	}
	if p.Partition >= topics[0].partitions {
		return Letter{}, fmt.Errorf("%w: %s has no partition %d", ErrNotFound, p.Topic, p.Partition)
	}
	first, end, err := bounds(ctx, c, p.Topic, p.Partition)
	if err != nil {
		return Letter{}, err
	}
	if p.Offset < first || p.Offset >= end {
		return Letter{}, fmt.Errorf("%w: no record at %s (the partition holds offsets %d to %d)", ErrNotFound, p, first, end-1)
	}
	var found *Letter
	err = readPartition(ctx, c, p.Topic, p.Partition, p.Offset, p.Offset+1, func(m kafka.Message) {
		l := Decode(m)
		found = &l
	})
	if err != nil {
		return Letter{}, err
	}
	if found == nil {
		return Letter{}, fmt.Errorf("%w: no record at %s", ErrNotFound, p)
	}
	return *found, nil
}

type topicInfo struct {
	name       string
	partitions int
}

// dlqTopics returns the named topics (ErrNotFound for one that does not
// exist), or, when names is empty, every dead-letter topic, sorted.
func dlqTopics(ctx context.Context, c *kafka.Client, names []string) ([]topicInfo, error) {
	var out []topicInfo
	err := retry(ctx, func(ctx context.Context) error {
		resp, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err != nil {
			return err
		}
		out = out[:0]
		for _, t := range resp.Topics {
			switch {
			case errors.Is(t.Error, kafka.UnknownTopicOrPartition):
				return fmt.Errorf("%w: no topic %s", ErrNotFound, t.Name)
			case t.Error != nil:
				return fmt.Errorf("topic %s: %w", t.Name, t.Error)
			case len(names) > 0 || IsTopic(t.Name) && !t.Internal:
				out = append(out, topicInfo{name: t.Name, partitions: len(t.Partitions)})
			}
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read topics: %w", err)
	}
	if len(names) > 0 && len(out) != len(names) {
		return nil, fmt.Errorf("%w: no topic %s", ErrNotFound, strings.Join(names, ", "))
	}
	slices.SortFunc(out, func(a, b topicInfo) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// readTopic visits every record of t's partitions up to their current end.
func readTopic(ctx context.Context, c *kafka.Client, t topicInfo, visit func(kafka.Message)) error {
	for p := range t.partitions {
		first, end, err := bounds(ctx, c, t.name, p)
		if err != nil {
			return err
		}
		if err := readPartition(ctx, c, t.name, p, first, end, visit); err != nil {
			return err
		}
	}
	return nil
}

// bounds returns a partition's first retained offset and its high watermark
// (the offset the next record will get).
func bounds(ctx context.Context, c *kafka.Client, topic string, partition int) (first, end int64, err error) {
	err = retry(ctx, func(ctx context.Context) error {
		resp, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
		}})
		if err != nil {
			return err
		}
		for _, po := range resp.Topics[topic] {
			if po.Partition == partition {
				first, end = po.FirstOffset, po.LastOffset
				return po.Error
			}
		}
		return errors.New("not in the broker's answer")
	})
	if err != nil {
		return 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, partition, err)
	}
	return first, end, nil
}

// retry calls f, each time with a timeout of its own, again while it fails
// with an error the broker calls temporary (a partition whose leader is
// still being elected, as in a topic just created), for at most timeout.
func retry(ctx context.Context, f func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for failures := 1; ; failures++ {
		fctx, cancel := context.WithTimeout(ctx, timeout)
		err := f(fctx)
		cancel()
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() || time.Now().After(deadline) {
			return err
		}
		if !sleep(ctx, backoff(failures)) {
			return err
		}
	}
}

// readPartition visits the records of one partition from offset from up to,
// not including, end.
func readPartition(ctx context.Context, c *kafka.Client, topic string, partition int, from, end int64, visit func(kafka.Message)) error {
	for off := from; off < end; {
		var next int64
		err := retry(ctx, func(ctx context.Context) error {
			resp, err := c.Fetch(ctx, &kafka.FetchRequest{
				Topic: topic, Partition: partition, Offset: off,
				MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 500 * time.Millisecond,
			})
			if err != nil {
				return err
			}
			if resp.Error != nil {
				return resp.Error
			}
			next, err = visitRecords(resp, topic, partition, off, end, visit)
			return err
		})
		if err != nil {
			return fmt.Errorf("read %s/%d at offset %d: %w", topic, partition, off, err)
		}
		if next == off {
			// Nothing at off although the partition ends later: only
			// records no reader sees (transaction markers) are left.
			return nil
		}
		off = next
	}
	return nil
}

// visitRecords visits the records of one fetch answer from offset off up to
// end and returns the offset after the last one visited.
func visitRecords(resp *kafka.FetchResponse, topic string, partition int, off, end int64, visit func(kafka.Message)) (int64, error) {
	for {
		r, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return off, nil
		}
		if err != nil {
			return off, err
		}
		if r.Offset < off {
			continue // a batch may start before the offset asked for
		}
		if r.Offset >= end {
			return end, nil
		}
		key, err := protocol.ReadAll(r.Key)
		if err != nil {
			return off, fmt.Errorf("key at %d: %w", r.Offset, err)
		}
		value, err := protocol.ReadAll(r.Value)
		if err != nil {
			return off, fmt.Errorf("value at %d: %w", r.Offset, err)
		}
		headers := make([]kafka.Header, len(r.Headers))
		for i, h := range r.Headers {
			headers[i] = kafka.Header{Key: h.Key, Value: slices.Clone(h.Value)}
		}
		visit(kafka.Message{Topic: topic, Partition: partition, Offset: r.Offset, Time: r.Time, Key: key, Value: value, Headers: headers})
		off = r.Offset + 1
	}
}

// newClient returns a client with a transport of its own (kafka-go's shared
// one caches metadata for seconds and keeps connections a broker restart
// broke), and the function that releases it.
func newClient(brokers []string) (*kafka.Client, func()) {
	tr := &kafka.Transport{DialTimeout: timeout}
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: timeout, Transport: tr}, tr.CloseIdleConnections
}
