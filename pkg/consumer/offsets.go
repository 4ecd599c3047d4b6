package consumer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/telemetry"
)

// offsetCheckTimeout bounds asking the broker for the group's committed
// offset of a partition.
const offsetCheckTimeout = 5 * time.Second

// offsetWatch notices messages the reader skipped. Sagashop's topics are not
// compacted and its producers are not transactional, so the offsets of a
// partition are contiguous: a fetched message whose offset is above the one
// expected means the messages in between are gone. kafka-go jumps without a
// word to the first offset still in the log when the group's offset fell out
// of retention (a stall that outlasted it): at start, or once the partition
// is assigned, it seeks there quietly; while reading, it logs and moves on.
// The watch compares each partition's first message, and any jump, with the
// group's committed offset: a partition handed over by a rebalance starts at
// the committed offset, which is no loss; beyond it, the messages in between
// are lost. The main loop calls observe for every message of a batch, then
// verify once, before handling the batch (so that nothing of it is
// committed yet): one request to the broker for all the partitions that
// need a look.
type offsetWatch struct {
	c      *Consumer
	client *kafka.Client
	next   map[partition]int64 // the offset expected next
	checks []offsetCheck       // awaiting verify
}

// offsetCheck is a message whose offset needs comparing with the group's
// committed offset: the first of its partition, or one past a jump.
type offsetCheck struct {
	p      partition
	seen   bool  // a message of p came before
	want   int64 // if seen: the offset expected
	offset int64
}

func (c *Consumer) newOffsetWatch(client *kafka.Client) *offsetWatch {
	return &offsetWatch{c: c, client: client, next: map[partition]int64{}}
}

// observe checks msg's offset against what its partition led to expect.
func (w *offsetWatch) observe(msg kafka.Message) {
	p := partitionOf(msg)
	want, seen := w.next[p]
	w.next[p] = msg.Offset + 1
	if seen && msg.Offset <= want {
		return // the next one, or a redelivery after a rebalance
	}
	w.checks = append(w.checks, offsetCheck{p: p, seen: seen, want: want, offset: msg.Offset})
}

// verify compares the offsets observe set aside with the group's committed
// ones, and reports the losses.
func (w *offsetWatch) verify(ctx context.Context) {
	if len(w.checks) == 0 {
		return
	}
	checks := w.checks
	w.checks = w.checks[:0]
	committed, err := w.committed(ctx, checks)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		for _, ch := range checks {
			if ch.seen {
				w.c.log.Warn("offsets jumped and the group's offset could not be read to tell a rebalance from a loss",
					telemetry.LogTopic, ch.p.topic, telemetry.LogPartition, ch.p.id, "from", ch.want, "to", ch.offset, telemetry.Err(err))
			}
		}
		return
	}
	for _, ch := range checks {
		c, ok := committed[ch.p]
		if !ok {
			c = -1
		}
		from, lost := skipped(ch.seen, ch.want, c, ch.offset)
		if lost == 0 {
			continue
		}
		w.c.metrics.offsetsSkipped.WithLabelValues(w.c.cfg.Group, ch.p.topic, strconv.Itoa(ch.p.id)).Add(float64(lost))
		w.c.log.Error("offsets skipped, messages lost: they left the log before the group read them",
			telemetry.LogTopic, ch.p.topic, telemetry.LogPartition, ch.p.id, "from", from, "to", ch.offset, "skipped", lost)
	}
}

// skipped decides whether a partition's message at offset follows what the
// consumer saw before and the group committed: seen says a message of the
// partition came before, want is the offset after it, committed the group's
// committed offset (negative: none). lost > 0 means the messages from from to
// offset (excluded) were never delivered.
func skipped(seen bool, want, committed, offset int64) (from, lost int64) {
	from = committed
	if seen && want > from {
		from = want
	}
	if from < 0 {
		// No commit and nothing seen: a new group starts wherever the log
		// starts.
		return from, 0
	}
	return from, max(offset-from, 0)
}

// committed asks the broker for the group's committed offsets of the
// checks' partitions; a partition without one is left out.
func (w *offsetWatch) committed(ctx context.Context, checks []offsetCheck) (map[partition]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, offsetCheckTimeout)
	defer cancel()
	topics := map[string][]int{}
	for _, ch := range checks {
		topics[ch.p.topic] = append(topics[ch.p.topic], ch.p.id)
	}
	resp, err := w.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: w.c.cfg.Group, Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets: %w", err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("fetch committed offsets: %w", resp.Error)
	}
	out := map[partition]int64{}
	for topic, ps := range resp.Topics {
		for _, po := range ps {
			if po.Error != nil {
				return nil, fmt.Errorf("fetch committed offset of %s/%d: %w", topic, po.Partition, po.Error)
			}
			if po.CommittedOffset >= 0 {
				out[partition{topic, po.Partition}] = po.CommittedOffset
			}
		}
	}
	return out, nil
}
