package consumer

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/telemetry"
)

// committer queues offsets for commit; *kafka.Reader is one.
type committer interface {
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// lanes are the parked partitions of one Run, each with the goroutine (its
// lane) that retries the partition's failed message and then applies the
// messages of the partition fetched meanwhile, in order, while the main loop
// goes on with the other partitions. The main loop hands a parked
// partition's messages to its lane (enqueue) until the lane, its queue
// empty, unparks the partition (take); both happen under mu, so a message is
// applied by the main loop only once its partition's lane has applied and
// committed every message before it.
type lanes struct {
	c        *Consumer
	dlq      Publisher
	commits  committer
	capacity int // messages a lane's queue holds before enqueue waits

	mu     sync.Mutex
	byPart map[partition]*lane
	// parked is len(byPart), for enqueue to skip the lock while no
	// partition is parked: only the main loop parks, so a zero it reads
	// stays zero until it parks one itself.
	parked atomic.Int32
	wg     sync.WaitGroup
}

type lane struct {
	p     partition
	queue []*entry      // fetched meanwhile, awaiting the lane
	taken chan struct{} // closed when the lane takes from its queue or ends
	ended bool          // the lane stopped with Run's context: it takes nothing more
}

func (c *Consumer) newLanes(dlq Publisher, commits committer) *lanes {
	return &lanes{c: c, dlq: dlq, commits: commits, capacity: c.cfg.ParkedMessages, byPart: map[partition]*lane{}}
}

// enqueue hands e to its partition's lane, if the partition is parked,
// waiting while the lane's queue is full (back-pressure: the main loop
// stops fetching until the lane catches up). dropped means the lane has
// stopped with Run's context: e stays uncommitted and its item, if any, is
// the caller's to finish. It returns an error only when ctx is done first.
func (ls *lanes) enqueue(ctx context.Context, e *entry) (queued, dropped bool, err error) {
	if ls.parked.Load() == 0 {
		return false, false, nil
	}
	p := partitionOf(e.msg)
	for waited := false; ; waited = true {
		ls.mu.Lock()
		l, ok := ls.byPart[p]
		switch {
		case !ok:
			ls.mu.Unlock()
			return false, false, nil
		case l.ended:
			ls.mu.Unlock()
			return true, true, nil
		case len(l.queue) < ls.capacity:
			l.queue = append(l.queue, e)
			ls.mu.Unlock()
			return true, false, nil
		}
		taken := l.taken
		ls.mu.Unlock()
		if !waited {
			ls.c.log.Warn("parked partition's queue is full, waiting for its lane", telemetry.LogTopic, p.topic,
				telemetry.LogPartition, p.id, "queued", ls.capacity)
		}
		select {
		case <-taken:
		case <-ctx.Done():
			return false, false, ctx.Err()
		}
	}
}

// start parks head's partition: a lane retries head, then applies rest and
// what enqueue hands it.
func (ls *lanes) start(ctx context.Context, head *item, rest []*entry) {
	l := &lane{p: partitionOf(head.msg), taken: make(chan struct{})}
	ls.mu.Lock()
	ls.byPart[l.p] = l
	ls.parked.Store(int32(len(ls.byPart)))
	ls.mu.Unlock()
	ls.c.metrics.parked.WithLabelValues(ls.c.cfg.Group).Inc()
	ls.wg.Add(1)
	go func() {
		defer ls.wg.Done()
		ls.run(ctx, l, head, rest)
	}()
}

// take returns up to BatchSize entries of l's queue; none means the queue
// was empty and the partition is unparked.
func (ls *lanes) take(l *lane) []*entry {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	close(l.taken)
	l.taken = make(chan struct{})
	if len(l.queue) == 0 {
		delete(ls.byPart, l.p)
		ls.parked.Store(int32(len(ls.byPart)))
		ls.c.metrics.parked.WithLabelValues(ls.c.cfg.Group).Dec()
		return nil
	}
	n := min(len(l.queue), ls.c.cfg.BatchSize)
	work := l.queue[:n:n]
	l.queue = l.queue[n:]
	return work
}

// end marks l stopped, leaving its partition parked (its messages
// uncommitted) until Run returns, and returns what was left in its queue.
func (ls *lanes) end(l *lane) []*entry {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.c.metrics.parked.WithLabelValues(ls.c.cfg.Group).Dec()
	l.ended = true
	close(l.taken)
	l.taken = make(chan struct{})
	left := l.queue
	l.queue = nil
	return left
}

// wait returns once every lane has stopped.
func (ls *lanes) wait() { ls.wg.Wait() }

// run is a lane: it retries head (its failed attempts so far count) until it
// is applied or dead-lettered, then handles rest and the entries enqueued
// meanwhile, BatchSize at a time, retrying in place; it commits their
// offsets as they reach their outcomes, and unparks the partition when
// nothing is left. When ctx ends first, the lane's messages stay
// uncommitted, for whoever owns the partition next.
func (ls *lanes) run(ctx context.Context, l *lane, head *item, rest []*entry) {
	c := ls.c
	h := &handling{c: c, dlq: ls.dlq}
	work := rest
	unparked := false
	defer func() {
		if unparked {
			return
		}
		c.finish(head)
		for _, e := range append(work, ls.end(l)...) {
			if e.it != nil {
				c.finish(e.it)
			}
		}
		c.log.Info("lane stopped, its messages stay uncommitted", telemetry.LogTopic, l.p.topic, telemetry.LogPartition, l.p.id)
	}()
	if !sleep(ctx, head.parkedFor) {
		return
	}
	if err := h.process(ctx, head, nil); err != nil {
		return
	}
	c.commit(ctx, ls.commits, []kafka.Message{head.msg})
	for {
		if len(work) > 0 {
			h.entries = work
			if err := h.work(ctx); err != nil {
				return
			}
			msgs := make([]kafka.Message, len(work))
			for i, e := range work {
				msgs[i] = e.msg
			}
			c.commit(ctx, ls.commits, msgs)
		}
		if work = ls.take(l); work == nil {
			unparked = true
			c.log.Info("partition unparked", telemetry.LogTopic, l.p.topic, telemetry.LogPartition, l.p.id)
			return
		}
	}
}
