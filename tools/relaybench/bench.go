package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
)

const (
	partitions = 3
	// forwarderTopic is Watermill's SQL topic: its tables are
	// watermill_relaybench and watermill_offsets_relaybench.
	forwarderTopic = "relaybench"
)

// bench runs the measurements of one invocation.
type bench struct {
	cfg   config
	dbURL string        // the relaybench database
	admin *pgxpool.Pool // on dbURL, no search_path
	tick  time.Duration
	self  string // this executable, started as the relay child
	runID string
}

// drainResult is one backlog drain.
type drainResult struct {
	Events          int     `json:"events"`
	FillSeconds     float64 `json:"fill_seconds"`
	Seconds         float64 `json:"seconds"`
	EventsPerSec    float64 `json:"events_per_sec"`
	CPUUsPerEvent   float64 `json:"cpu_us_per_event"`
	DBCPUUsPerEvent float64 `json:"db_cpu_us_per_event"`
	Inversions      int     `json:"inversions"`
	Duplicates      int     `json:"duplicates"`
	Missing         int     `json:"missing"`
}

// steadyResult is one steady-rate run.
type steadyResult struct {
	Rate            float64 `json:"rate"`
	AchievedRate    float64 `json:"achieved_rate"`
	Events          int     `json:"events"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	CPUUsPerEvent   float64 `json:"cpu_us_per_event"`
	DBCPUUsPerEvent float64 `json:"db_cpu_us_per_event"`
	Inversions      int     `json:"inversions"`
	Duplicates      int     `json:"duplicates"`
	Missing         int     `json:"missing"`
}

// target is what one measurement works on: a fresh schema and topic.
type target struct {
	kind   string
	topic  string
	pool   *pgxpool.Pool // the writers', search_path = the kind's schema
	url    string        // the same for the relay child
	tr     *tracker
	stopRd context.CancelFunc
	waitRd func()
}

// prepare recreates the kind's schema and tables, creates a topic of the
// run's own and starts reading it.
func (b *bench) prepare(ctx context.Context, kind, phase string, rep int) (*target, error) {
	schema := kind
	if _, err := b.admin.Exec(ctx, fmt.Sprintf("DROP SCHEMA IF EXISTS %[1]s CASCADE; CREATE SCHEMA %[1]s", schema)); err != nil {
		return nil, fmt.Errorf("recreate schema %s: %w", schema, err)
	}
	u, err := withSearchPath(b.dbURL, schema)
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "relaybench-writer"
	pcfg.MaxConns = int32(b.cfg.writers + 2)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open writer pool: %w", err)
	}
	t := &target{kind: kind, pool: pool, url: u}
	if err := createTables(ctx, pool, kind, b.cfg.relay); err != nil {
		pool.Close()
		return nil, err
	}
	t.topic = fmt.Sprintf("relaybench.%s.%s.%s.%d", b.runID, phase, kind, rep)
	if err := broker.EnsureTopics(ctx, b.cfg.brokers, partitions, t.topic); err != nil {
		pool.Close()
		return nil, err
	}
	if err := waitForLeaders(ctx, b.cfg.brokers, t.topic, partitions); err != nil {
		b.cleanup(t)
		return nil, err
	}
	t.tr = newTracker(b.cfg.events + 1)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.stopRd = cancel
	t.waitRd = startReaders(rctx, b.cfg.brokers, t.topic, partitions, t.tr)
	return t, nil
}

// stopReading stops the readers and returns what they saw.
func (t *target) stopReading() outcome {
	t.stopRd()
	t.waitRd()
	return t.tr.outcome()
}

// cleanup deletes the topic and closes the pool; the schema is dropped with
// the database at the end of the run (or by the next prepare).
func (b *bench) cleanup(t *target) {
	if t.stopRd != nil {
		t.stopRd()
		t.waitRd()
	}
	t.pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.DeleteTopics(ctx, b.cfg.brokers, t.topic); err != nil {
		fmt.Fprintf(os.Stderr, "relaybench: delete topic %s: %v\n", t.topic, err)
	}
}

func createTables(ctx context.Context, pool *pgxpool.Pool, kind string, s relaySettings) error {
	switch kind {
	case kindSagashop:
		// The dead-letter table too, as platform.Migrate creates it: a row
		// Kafka refuses is moved there rather than retried for ever.
		for _, ddl := range []string{outbox.Schema, outbox.DeadLetterSchema} {
			if _, err := pool.Exec(ctx, ddl); err != nil {
				return fmt.Errorf("create outbox tables: %w", err)
			}
		}
	case kindWatermill:
		sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{
			SchemaAdapter:  watermillSchema(s),
			OffsetsAdapter: wmsql.DefaultPostgreSQLOffsetsAdapter{},
		}, watermill.NopLogger{})
		if err != nil {
			return fmt.Errorf("watermill sql subscriber: %w", err)
		}
		defer sub.Close()
		if err := sub.SubscribeInitialize(forwarderTopic); err != nil {
			return fmt.Errorf("create watermill tables: %w", err)
		}
	}
	return nil
}

func withSearchPath(dbURL, schema string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// newEvent is an OrderCreated of order key, the shape of a real event.
func newEvent(key int) (events.Envelope, error) {
	orderID := fmt.Sprintf("order-%05d", key)
	if key < 0 {
		orderID = "warm-up"
	}
	return events.New("order", events.OrderCreated{
		OrderID:    orderID,
		CustomerID: "customer-1",
		Email:      "customer-1@example.com",
		Currency:   "EUR",
		Items:      []events.Item{{SKU: "mug", Quantity: 2, UnitPriceCents: 1250}},
		TotalCents: 2500,
	})
}

// writeTx commits the events of keys in one transaction, each written the
// way its relay's users write them: outbox.Write for Sagashop, Watermill's
// forwarder publisher over its SQL publisher bound to the transaction.
func (b *bench) writeTx(ctx context.Context, t *target, keys []int, warmUp bool) ([]string, error) {
	envs := make([]events.Envelope, len(keys))
	ws := make([]*written, len(keys))
	ids := make([]string, len(keys))
	for i, k := range keys {
		e, err := newEvent(k)
		if err != nil {
			return nil, err
		}
		envs[i] = e
		ids[i] = e.ID
		ws[i] = t.tr.expect(e.ID, k, warmUp)
	}
	err := pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		switch t.kind {
		case kindSagashop:
			for _, e := range envs {
				if err := outbox.Write(ctx, tx, t.topic, e); err != nil {
					return err
				}
			}
		case kindWatermill:
			sp, err := wmsql.NewPublisher(wmsql.TxFromPgx(tx), wmsql.PublisherConfig{
				SchemaAdapter: watermillSchema(b.cfg.relay),
			}, watermill.NopLogger{})
			if err != nil {
				return err
			}
			fp := forwarder.NewPublisher(sp, forwarder.PublisherConfig{ForwarderTopic: forwarderTopic})
			for _, e := range envs {
				if err := fp.Publish(t.topic, watermillMessage(ctx, t.topic, e)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commit %d events: %w", len(keys), err)
	}
	t.tr.committed(time.Now(), ws...)
	return ids, nil
}

// watermillMessage carries e as Sagashop's relay publishes it: the data as
// the value, the CloudEvents attributes as metadata, which Watermill's Kafka
// marshaler turns into the same headers.
func watermillMessage(ctx context.Context, topic string, e events.Envelope) *message.Message {
	m := message.NewMessage(e.ID, message.Payload(e.Data))
	for _, h := range events.ToMessage(topic, e).Headers {
		m.Metadata.Set(h.Key, string(h.Value))
	}
	m.SetContext(ctx)
	return m
}

// fill commits the drain's backlog: events over keys, perTx to a
// transaction, one transaction after the other, so commit order is
// generation order.
func (b *bench) fill(ctx context.Context, t *target) error {
	n := b.cfg.events
	for i := 0; i < n; i += b.cfg.perTx {
		keys := make([]int, 0, b.cfg.perTx)
		for j := i; j < min(i+b.cfg.perTx, n); j++ {
			keys = append(keys, j%b.cfg.keys)
		}
		if _, err := b.writeTx(ctx, t, keys, false); err != nil {
			return err
		}
	}
	return nil
}

// child is a relay running in a process of its own.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{} // closed when the process has exited
	once   sync.Once
}

// startChild starts the relay of t's kind and waits until it is set up.
func (b *bench) startChild(ctx context.Context, t *target) (*child, error) {
	args := append([]string{"relay", "-kind", t.kind, "-db", t.url,
		"-brokers", strings.Join(b.cfg.brokers, ","), "-topic", forwarderTopic}, b.cfg.relay.args()...)
	if b.cfg.profile != "" {
		args = append(args, "-cpuprofile", filepath.Join(b.cfg.profile, strings.ReplaceAll(t.topic, ".", "-")+".pprof"))
	}
	cmd := exec.Command(b.self, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s relay: %w", t.kind, err)
	}
	c := &child{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(c.exited)
	}()
	select {
	case ok := <-ready:
		if ok {
			return c, nil
		}
		err = fmt.Errorf("%s relay exited before it was ready", t.kind)
	case <-time.After(30 * time.Second):
		err = fmt.Errorf("%s relay not ready after 30s", t.kind)
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.stop()
	return nil, err
}

// start tells the child to start relaying.
func (c *child) start() error {
	_, err := io.WriteString(c.stdin, "go\n")
	return err
}

// stop closes the child's stdin, which stops its relay, and kills it if it
// has not exited 15 seconds later. Calls after the first do nothing.
func (c *child) stop() {
	c.once.Do(func() {
		_ = c.stdin.Close()
		select {
		case <-c.exited:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	})
}

// cpu is the CPU time of the relay process and of its PostgreSQL backends.
type cpu struct {
	relay    time.Duration
	backends map[int]time.Duration
}

func (b *bench) readCPU(ctx context.Context, c *child) (cpu, error) {
	r, err := procCPU(c.cmd.Process.Pid, b.tick)
	if err != nil {
		return cpu{}, fmt.Errorf("relay cpu: %w", err)
	}
	s := cpu{relay: r, backends: map[int]time.Duration{}}
	rows, err := b.admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, relayAppName)
	if err != nil {
		return cpu{}, fmt.Errorf("relay backends: %w", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return cpu{}, fmt.Errorf("relay backends: %w", err)
	}
	for _, pid := range pids {
		// A backend that exited in between has nothing more to count.
		if d, err := procCPU(int(pid), b.tick); err == nil {
			s.backends[int(pid)] = d
		}
	}
	return s, nil
}

// since returns the relay's and its backends' CPU time from start to c. A
// backend opened after start counts from zero, as a new process does.
func (c cpu) since(start cpu) (relay, db time.Duration) {
	for pid, d := range c.backends {
		db += d - start.backends[pid]
	}
	return c.relay - start.relay, db
}

// waitDelivered waits until n measured events are delivered or the timeout
// passes, and returns when the last one arrived.
func waitDelivered(ctx context.Context, tr *tracker, n int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, last := tr.progress()
		if got >= n {
			return last, nil
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%d of %d events on Kafka after %s", got, n, timeout)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (b *bench) drain(ctx context.Context, kind string, rep int) (drainResult, error) {
	t, err := b.prepare(ctx, kind, "drain", rep)
	if err != nil {
		return drainResult{}, err
	}
	defer b.cleanup(t)
	fillStart := time.Now()
	if err := b.fill(ctx, t); err != nil {
		return drainResult{}, err
	}
	res := drainResult{Events: b.cfg.events, FillSeconds: time.Since(fillStart).Seconds()}
	c, err := b.startChild(ctx, t)
	if err != nil {
		return res, err
	}
	defer c.stop()
	cpu0, err := b.readCPU(ctx, c)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := c.start(); err != nil {
		return res, fmt.Errorf("start relaying: %w", err)
	}
	last, werr := waitDelivered(ctx, t.tr, b.cfg.events, b.cfg.timeout)
	cpu1, err := b.readCPU(ctx, c)
	if err != nil {
		return res, err
	}
	c.stop()
	o := t.stopReading()
	relay, db := cpu1.since(cpu0)
	res.Seconds = last.Sub(start).Seconds()
	res.EventsPerSec = ratio(float64(o.delivered), res.Seconds)
	res.CPUUsPerEvent = ratio(float64(relay.Microseconds()), float64(o.delivered))
	res.DBCPUUsPerEvent = ratio(float64(db.Microseconds()), float64(o.delivered))
	res.Inversions, res.Duplicates, res.Missing = o.inversions, o.duplicates, o.missing
	return res, werr
}

func (b *bench) steady(ctx context.Context, kind string, rep int) (steadyResult, error) {
	res := steadyResult{Rate: b.cfg.rate}
	t, err := b.prepare(ctx, kind, "steady", rep)
	if err != nil {
		return res, err
	}
	defer b.cleanup(t)
	c, err := b.startChild(ctx, t)
	if err != nil {
		return res, err
	}
	defer c.stop()
	if err := c.start(); err != nil {
		return res, fmt.Errorf("start relaying: %w", err)
	}
	// The first publication to a fresh topic fetches its metadata.
	ids, err := b.writeTx(ctx, t, []int{-1}, true)
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !t.tr.isDelivered(ids[0]) {
		if time.Now().After(deadline) {
			return res, errors.New("warm-up event not on Kafka after 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cpu0, err := b.readCPU(ctx, c)
	if err != nil {
		return res, err
	}
	n, span, err := b.writeAtRate(ctx, t)
	if err != nil {
		return res, err
	}
	res.Events = n
	res.AchievedRate = ratio(float64(n), span.Seconds())
	_, werr := waitDelivered(ctx, t.tr, n, b.cfg.timeout)
	cpu1, err := b.readCPU(ctx, c)
	if err != nil {
		return res, err
	}
	c.stop()
	o := t.stopReading()
	relay, db := cpu1.since(cpu0)
	res.P50Ms = ms(percentile(o.latencies, 50))
	res.P99Ms = ms(percentile(o.latencies, 99))
	res.MaxMs = ms(percentile(o.latencies, 100))
	res.CPUUsPerEvent = ratio(float64(relay.Microseconds()), float64(o.delivered))
	res.DBCPUUsPerEvent = ratio(float64(db.Microseconds()), float64(o.delivered))
	res.Inversions, res.Duplicates, res.Missing = o.inversions, o.duplicates, o.missing
	return res, werr
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// writeAtRate commits rate × duration events, one per transaction, on a
// fixed schedule (open loop: a slow commit does not delay the next ones'
// start), over the keys in turn. It returns how many it committed and how
// long from the first scheduled start to the last commit.
func (b *bench) writeAtRate(ctx context.Context, t *target) (int, time.Duration, error) {
	n := int(b.cfg.rate * b.cfg.steady.Seconds())
	interval := time.Duration(float64(time.Second) / b.cfg.rate)
	jobs := make(chan int, n)
	start := time.Now()
	go func() {
		defer close(jobs)
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			jobs <- i
		}
	}()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range b.cfg.writers {
		wg.Go(func() {
			for i := range jobs {
				if _, err := b.writeTx(ctx, t, []int{i % b.cfg.keys}, false); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return n, time.Since(start), firstErr
}
