package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/events"
)

// waitForLeaders polls the metadata of topic until each of its partitions
// has a leader: a write before that fails or waits for a metadata refresh.
func waitForLeaders(ctx context.Context, brokers []string, topic string, partitions int) error {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 5 * time.Second, Transport: tr}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		resp, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		switch {
		case err != nil:
			last = err
		case len(resp.Topics) != 1 || resp.Topics[0].Error != nil:
			last = fmt.Errorf("topic %s not in metadata yet", topic)
		default:
			led := 0
			for _, p := range resp.Topics[0].Partitions {
				if p.Error == nil && p.Leader.Host != "" {
					led++
				}
			}
			if led == partitions {
				return nil
			}
			last = fmt.Errorf("%d of %d partitions of %s have a leader", led, partitions, topic)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for partition leaders: %w", errors.Join(ctx.Err(), last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// delivery is one event as the reader saw it first.
type delivery struct {
	partition  int
	offset     int64
	consumedAt time.Time
}

// written is one event as the writers committed it.
type written struct {
	key         int
	seq         int // commit rank: smaller committed earlier
	committedAt time.Time
	warmUp      bool
}

// tracker joins what the writers committed with what the readers consumed,
// by event id (the ce_id header both relays carry).
type tracker struct {
	mu         sync.Mutex
	written    map[string]*written
	delivered  map[string]delivery
	duplicates int
	unknown    int
	lastAt     time.Time // the latest first delivery of a measured event
	measured   int       // distinct measured (not warm-up) events delivered
	seqs       int
}

func newTracker(capacity int) *tracker {
	return &tracker{
		written:   make(map[string]*written, capacity),
		delivered: make(map[string]delivery, capacity),
	}
}

// expect registers an event before its transaction commits, so a reader
// faster than the writer still finds it.
func (t *tracker) expect(id string, key int, warmUp bool) *written {
	w := &written{key: key, warmUp: warmUp}
	t.mu.Lock()
	t.written[id] = w
	t.mu.Unlock()
	return w
}

// committed records that the transaction holding ws committed: they rank
// after everything committed before, in the order given.
func (t *tracker) committed(at time.Time, ws ...*written) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range ws {
		w.seq = t.seqs
		w.committedAt = at
		t.seqs++
	}
}

func (t *tracker) consumed(m kafka.Message, at time.Time) {
	id := events.Header(m, events.HeaderID)
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.written[id]
	if !ok {
		t.unknown++
		return
	}
	if _, seen := t.delivered[id]; seen {
		t.duplicates++
		return
	}
	t.delivered[id] = delivery{partition: m.Partition, offset: m.Offset, consumedAt: at}
	if !w.warmUp {
		t.measured++
		if at.After(t.lastAt) {
			t.lastAt = at
		}
	}
}

// progress returns the distinct measured events delivered so far and when
// the latest of them arrived.
func (t *tracker) progress() (int, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.measured, t.lastAt
}

func (t *tracker) isDelivered(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.delivered[id]
	return ok
}

// outcome is what the readers saw of the measured events.
type outcome struct {
	delivered  int
	missing    int
	duplicates int
	unknown    int
	inversions int
	latencies  []time.Duration // commit to first consumption, sorted
}

func (t *tracker) outcome() outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := outcome{duplicates: t.duplicates, unknown: t.unknown}
	type got struct {
		seq       int
		partition int
		offset    int64
	}
	perKey := map[int][]got{}
	for id, w := range t.written {
		if w.warmUp {
			continue
		}
		d, ok := t.delivered[id]
		if !ok {
			o.missing++
			continue
		}
		o.delivered++
		o.latencies = append(o.latencies, max(d.consumedAt.Sub(w.committedAt), 0))
		perKey[w.key] = append(perKey[w.key], got{w.seq, d.partition, d.offset})
	}
	for _, gs := range perKey {
		// One key's events are on one partition, where the offset is the
		// order Kafka keeps; a key split over partitions is out of order
		// anyway, and sorting by partition first counts that.
		slices.SortFunc(gs, func(a, b got) int {
			if a.partition != b.partition {
				return a.partition - b.partition
			}
			return int(a.offset - b.offset)
		})
		seqs := make([]int, len(gs))
		for i, g := range gs {
			seqs[i] = g.seq
		}
		o.inversions += countInversions(seqs)
	}
	slices.Sort(o.latencies)
	return o
}

// startReaders reads every partition of topic from its first offset into t
// until ctx ends; the returned wait blocks until the readers are closed.
func startReaders(ctx context.Context, brokers []string, topic string, partitions int, t *tracker) func() {
	var wg sync.WaitGroup
	for p := range partitions {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:   brokers,
			Topic:     topic,
			Partition: p,
			MinBytes:  1,
			MaxBytes:  16 << 20,
			MaxWait:   100 * time.Millisecond,
		})
		wg.Go(func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				t.consumed(m, time.Now())
			}
		})
	}
	return wg.Wait
}
