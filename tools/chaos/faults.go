package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/events"
)

// Fault kinds.
const (
	faultKill     = "kill"     // SIGKILL of one or more services, restarted after Hold
	faultPause    = "pause"    // SIGSTOP of a service for Hold, then SIGCONT
	faultKafka    = "kafka"    // broker SIGKILLed, restarted after Hold
	faultPostgres = "postgres" // pg_ctl stop -m immediate, restarted after Hold
	faultPoison   = "poison"   // a malformed message on orders.events
)

// fault is one planned fault.
type fault struct {
	At       time.Duration // after the load starts
	Kind     string
	Services []string      // kill, pause
	Hold     time.Duration // down or paused for this long
	// Param: a network fault's milliseconds (latency, stall's close timeout).
	Param int `json:",omitempty"`
	// InFlight: a kill waits (up to 3 s) for the service to have work in
	// flight (outbox rows or consumer lag) before it strikes.
	InFlight bool
}

// plan draws the run's faults from its seed: kills and pauses at random
// moments of the window, several services at once for one kill in five;
// Kafka and PostgreSQL faults one at a time, each in a slot of its own;
// poison messages at random moments. Sorted by At.
func plan(cfg config) []fault {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc4a05))
	w := cfg.window()
	at := func(from, to float64) time.Duration {
		return time.Duration((from + rng.Float64()*(to-from)) * float64(w))
	}
	var out []fault
	for left := cfg.Kills; left > 0; {
		n := 1
		if left > 1 && rng.IntN(5) == 0 {
			n = 2 + rng.IntN(min(left, 3)-1)
		}
		perm := rng.Perm(len(services))
		var names []string
		for _, i := range perm[:n] {
			names = append(names, services[i])
		}
		out = append(out, fault{
			At: at(0.02, 0.9), Kind: faultKill, Services: names,
			Hold:     time.Duration(200+rng.IntN(4800)) * time.Millisecond,
			InFlight: rng.IntN(2) == 0,
		})
		left -= n
	}
	for range cfg.Pauses {
		out = append(out, fault{At: at(0.05, 0.7), Kind: faultPause, Services: []string{services[rng.IntN(len(services))]}, Hold: cfg.Pause})
	}
	// Broker and database faults take turns in equal slots of the window.
	var infra []string
	for range cfg.Kafka {
		infra = append(infra, faultKafka)
	}
	for range cfg.Postgres {
		infra = append(infra, faultPostgres)
	}
	rng.Shuffle(len(infra), func(i, j int) { infra[i], infra[j] = infra[j], infra[i] })
	for i, kind := range infra {
		slot := 0.85 / float64(len(infra))
		from := 0.05 + float64(i)*slot
		out = append(out, fault{At: at(from, from+slot/3), Kind: kind, Hold: time.Duration(1000+rng.IntN(4000)) * time.Millisecond})
	}
	for range cfg.Poisons {
		out = append(out, fault{At: at(0.05, 0.9), Kind: faultPoison})
	}
	for range cfg.Net {
		f := fault{At: at(0.05, 0.85), Kind: netKinds[rng.IntN(len(netKinds))], Hold: time.Duration(3000+rng.IntN(5000)) * time.Millisecond}
		switch f.Kind {
		case faultNetLatency:
			f.Param = 150 + rng.IntN(300)
		case faultNetStall:
			f.Param = 2000 + rng.IntN(2000)
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b fault) int { return int(a.At - b.At) })
	return out
}

// faultRecord is what happened when a fault was injected.
type faultRecord struct {
	Kind     string        `json:"kind"`
	At       float64       `json:"at_s"` // seconds after the load started
	Services []string      `json:"services,omitempty"`
	Hold     time.Duration `json:"hold_ns"`
	// Kills: each service's work in flight at the moment of its kill.
	InFlight []inFlight `json:"in_flight,omitempty"`
	Error    string     `json:"error,omitempty"`
	// Skipped: fewer services than planned were struck (every other one
	// stayed down or paused by other faults for 20 s).
	Skipped bool    `json:"skipped,omitempty"`
	Took    float64 `json:"took_s"` // until restored (restart command returned)
}

type inFlight struct {
	Service string  `json:"service"`
	Outbox  int     `json:"outbox_rows"`
	Lag     float64 `json:"consumer_lag"`
	Waited  bool    `json:"waited_for_it"`
}

func (f inFlight) busy() bool { return f.Outbox > 0 || f.Lag > 0 }

// injector carries the plan out.
type injector struct {
	st  *stack
	log *logger

	mu      sync.Mutex
	poisons []string // keys of the poison messages written
	toxics  int      // network faults so far, for unique toxic names
	claimed map[string]bool
}

func (in *injector) poisonKeys() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.poisons)
}

// run injects every fault at its time and returns once all are undone.
func (in *injector) run(ctx context.Context, p []fault, start time.Time) []faultRecord {
	recs := make([]faultRecord, len(p))
	var wg sync.WaitGroup
	for i, f := range p {
		if d := time.Until(start.Add(f.At)); d > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return recs[:i]
			case <-time.After(d):
			}
		}
		wg.Go(func() { recs[i] = in.inject(ctx, f, start) })
	}
	wg.Wait()
	return recs
}

func (in *injector) inject(ctx context.Context, f fault, start time.Time) faultRecord {
	began := time.Now()
	rec := faultRecord{Kind: f.Kind, At: time.Since(start).Seconds(), Hold: f.Hold}
	var err error
	switch f.Kind {
	case faultKill:
		err = in.kill(ctx, f, &rec)
	case faultPause:
		name := in.pickWait(ctx, f.Services[0])
		if name == "" {
			rec.Skipped = true
			break
		}
		rec.Services = []string{name}
		if err = in.st.pause(name); err == nil {
			in.log.printf("SIGSTOP %s for %s", name, f.Hold)
			sleep(ctx, f.Hold)
			err = in.st.resume(name)
		}
		in.release(name)
	case faultKafka:
		in.st.infra.Lock()
		began, rec.At = time.Now(), time.Since(start).Seconds() // from when its turn came
		in.log.printf("SIGKILL kafka, down %s", f.Hold)
		if err = in.st.killKafka(); err == nil {
			sleep(ctx, f.Hold)
			err = in.st.startKafka(context.WithoutCancel(ctx))
			in.log.printf("kafka back after %.1fs", time.Since(began).Seconds())
		}
		in.st.infra.Unlock()
	case faultPostgres:
		in.st.infra.Lock()
		began, rec.At = time.Now(), time.Since(start).Seconds()
		in.log.printf("postgres stop -m immediate, down %s", f.Hold)
		if err = in.st.stopPostgres(ctx); err == nil {
			sleep(ctx, f.Hold)
			err = in.st.startPostgres(context.WithoutCancel(ctx))
			in.log.printf("postgres back after %.1fs", time.Since(began).Seconds())
		}
		in.st.infra.Unlock()
	case faultPoison:
		err = in.poison(ctx)
	case faultNetLatency, faultNetStall, faultNetReset:
		in.mu.Lock()
		in.toxics++
		name := fmt.Sprintf("%s-%d", f.Kind, in.toxics)
		in.mu.Unlock()
		rec.Services = []string{"postgres"}
		if err = in.st.net.add(name, f.Kind, f.Param); err == nil {
			in.log.printf("%s on the services' PostgreSQL connections for %s (%d ms)", f.Kind, f.Hold, f.Param)
			sleep(ctx, f.Hold)
			err = in.st.net.remove(context.WithoutCancel(ctx), name)
		}
	}
	if err != nil {
		rec.Error = err.Error()
		in.log.printf("%s: %v", f.Kind, err)
	}
	rec.Took = time.Since(began).Seconds()
	return rec
}

// pick claims want if it runs and no other fault holds it, else the first
// service that does; "" when none does. release gives a claimed service
// back once its fault is undone, so two faults never strike one process.
func (in *injector) pick(want string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.claimed == nil {
		in.claimed = map[string]bool{}
	}
	for _, name := range append([]string{want}, services...) {
		if !in.claimed[name] && in.st.running(name) {
			in.claimed[name] = true
			return name
		}
	}
	return ""
}

// pickWait is pick, waiting up to 20 s for a service to be free: the
// faults are dense enough at full size that every service can be down or
// paused at once, and a planned kill is to happen, if late.
func (in *injector) pickWait(ctx context.Context, want string) string {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if name := in.pick(want); name != "" || time.Now().After(deadline) || !sleep(ctx, 100*time.Millisecond) {
			return name
		}
	}
}

func (in *injector) release(name string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	delete(in.claimed, name)
}

func (in *injector) kill(ctx context.Context, f fault, rec *faultRecord) error {
	var names []string
	for _, want := range f.Services {
		if name := in.pickWait(ctx, want); name != "" {
			names = append(names, name)
		}
	}
	rec.Services = names
	rec.Skipped = len(names) < len(f.Services)
	defer func() {
		for _, name := range names {
			in.release(name)
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for _, name := range names {
		wg.Go(func() {
			fl := in.probe(ctx, name)
			if f.InFlight && !fl.busy() {
				deadline := time.Now().Add(3 * time.Second)
				for !fl.busy() && time.Now().Before(deadline) && ctx.Err() == nil {
					sleep(ctx, 20*time.Millisecond)
					fl = in.probe(ctx, name)
				}
				fl.Waited = true
			}
			err := in.st.kill(name)
			in.log.printf("SIGKILL %s (outbox %d, lag %.0f), restart in %s", name, fl.Outbox, fl.Lag, f.Hold)
			mu.Lock()
			rec.InFlight = append(rec.InFlight, fl)
			if err != nil {
				errs = append(errs, err.Error())
			}
			mu.Unlock()
			if err != nil {
				return
			}
			sleep(ctx, f.Hold)
			if err := in.st.restart(name); err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// probe reads a service's work in flight: the rows in its outbox (read as
// the superuser) and its consumer lag (its /metrics). Either may be
// unreadable while PostgreSQL is down; what was read is returned.
func (in *injector) probe(ctx context.Context, name string) inFlight {
	fl := inFlight{Service: name}
	qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_ = in.st.admin.QueryRow(qctx, fmt.Sprintf("SELECT count(*) FROM %s_svc.outbox", name)).Scan(&fl.Outbox)
	fl.Lag, _ = metricSum(qctx, in.st.client, in.st.url(name), "consumer_lag")
	return fl
}

// poison writes one message without CloudEvents headers to orders.events:
// every group reading that topic (payment, inventory, shipping, email) must
// dead-letter it once, and nothing else. It waits its turn behind a Kafka or
// PostgreSQL fault, and counts a message only once the broker acknowledged
// it (a write in doubt is retried with the same key, which could make one
// key two letters: the check counts by key).
func (in *injector) poison(ctx context.Context) error {
	in.st.infra.Lock()
	defer in.st.infra.Unlock()
	in.mu.Lock()
	key := "chaos-poison-" + strconv.Itoa(len(in.poisons))
	in.mu.Unlock()
	w := &kafka.Writer{
		Addr: kafka.TCP(in.st.brokers()...), Topic: events.TopicOrders, RequiredAcks: kafka.RequireAll,
		MaxAttempts: 1, WriteTimeout: 5 * time.Second,
	}
	defer w.Close()
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = w.WriteMessages(wctx, kafka.Message{Key: []byte(key), Value: []byte("not an event {")})
		cancel()
		if err == nil {
			in.mu.Lock()
			in.poisons = append(in.poisons, key)
			in.mu.Unlock()
			in.log.printf("poison message %s on %s", key, events.TopicOrders)
			return nil
		}
		sleep(ctx, time.Second)
	}
	return fmt.Errorf("poison %s: %w", key, err)
}

// metricSum sums the samples of a metric on a service's /metrics.
func metricSum(ctx context.Context, client *http.Client, base, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
