// Command chaos is Sagashop's fault-injection suite (make chaos, make
// chaos-smoke), after Jepsen's method: a history of every operation of an
// open-loop load, faults injected on a schedule drawn from a seed it prints,
// heal, drain, then invariants checked over the whole history.
//
// It runs a stack of its own, since it kills and restarts every part of it:
// a private PostgreSQL cluster and Kafka broker (tools/infra.sh with their own
// SAGASHOP_LOCAL and ports, 35432 and 39092 by default; the main stack on
// 5432/9092 is never touched) and the five service binaries, built afresh,
// on free ports under its own supervisor.
//
// A run:
//
//  1. starts the private infrastructure from empty data folders, builds and
//     starts the services, puts the run's products and customers (HTTP);
//  2. places -orders orders at -rate a second, open loop, the realistic mix
//     (most ship, some customers cannot pay, some products have no stock, a
//     few race for a scarce product), each POST /orders with an
//     Idempotency-Key, retried with it on no answer or a 5xx;
//  3. meanwhile injects the planned faults: SIGKILL of services (several at
//     once sometimes, some timed to land while the service has work in
//     flight), SIGSTOP longer than the consumer session timeout, Kafka
//     SIGKILLed and restarted, PostgreSQL stopped -m immediate and restarted,
//     and a few poison messages (no CloudEvents headers) on orders.events;
//  4. heals (everything restarted and ready), resolves every POST that got no
//     answer by retrying it with its key, and waits for every acknowledged
//     order to end;
//  5. checks the invariants from the services' tables and the dead-letter
//     topics, writes report.json and report.md into -out, and exits 1 when
//     one fails.
//
// The plan is a function of the seed and the sizes: -seed N repeats a run's
// schedule (its timing against the services' own still varies).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	ok, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// config is one run's sizes and places.
type config struct {
	Orders    int     // orders placed
	Rate      float64 // orders a second, open loop
	Kills     int     // service processes SIGKILLed (a multi-kill counts each)
	Pauses    int     // SIGSTOP/SIGCONT of a service
	Kafka     int     // broker SIGKILLs
	Postgres  int     // pg_ctl stop -m immediate
	Poisons   int     // malformed messages put on orders.events
	Net       int     // network faults between the services and PostgreSQL
	Pause     time.Duration
	Drain     time.Duration // after heal, for every acknowledged order to end
	Seed      uint64
	Customers int
	SKUs      int
	Sabotage  bool // check the checker: break what invariants guard, expect exactly those to fail
	// Single: one fault kind only (kill, pause, kafka, postgres), SingleCount
	// of them SingleGap apart, each fault's cost measured (single.go).
	Single      string
	SingleCount int
	SingleGap   time.Duration

	Root                string // the repository
	Local               string // the private stack's state folder
	Out                 string // where the report and logs go
	PGPort              int
	KafkaPort           int
	KafkaControllerPort int
	Log                 io.Writer
}

func (c config) window() time.Duration {
	return time.Duration(float64(c.Orders) / c.Rate * float64(time.Second))
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.IntVar(&c.Orders, "orders", 400, "orders placed")
	fs.Float64Var(&c.Rate, "rate", 20, "orders a second (open loop); the faults are spread over orders/rate seconds")
	fs.IntVar(&c.Kills, "kills", 5, "service processes SIGKILLed (several at once sometimes; each counts)")
	fs.IntVar(&c.Pauses, "pauses", 1, "services paused with SIGSTOP, longer than the consumer session timeout (6 s)")
	fs.IntVar(&c.Kafka, "kafka-restarts", 1, "times the Kafka broker is SIGKILLed and restarted")
	fs.IntVar(&c.Postgres, "postgres-restarts", 1, "times PostgreSQL is stopped with -m immediate and restarted")
	fs.IntVar(&c.Poisons, "poisons", 3, "malformed messages (no CloudEvents headers) put on orders.events on purpose")
	fs.IntVar(&c.Net, "net-faults", 3, "network faults between the services and PostgreSQL (Toxiproxy: latency, stall, reset)")
	fs.DurationVar(&c.Pause, "pause", 13*time.Second, "how long a SIGSTOP lasts (more than the 6 s session timeout)")
	fs.DurationVar(&c.Drain, "drain", 60*time.Second, "after heal, how long every acknowledged order has to end")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of the plan (0: from the clock; printed either way)")
	fs.IntVar(&c.Customers, "customers", 50, "paying customers")
	fs.IntVar(&c.SKUs, "skus", 20, "products in stock")
	fs.BoolVar(&c.Sabotage, "sabotage", false, "check the checker: after the drain, break one thing each of most invariants guards; the run passes only if exactly those invariants fail")
	fs.StringVar(&c.Single, "single", "", "measure one fault kind alone: kill, pause, kafka or postgres, -single-count of them -single-gap apart, nothing else injected; -orders is then rate × (count+1) × gap")
	fs.IntVar(&c.SingleCount, "single-count", 3, "with -single: how many faults")
	fs.DurationVar(&c.SingleGap, "single-gap", 30*time.Second, "with -single: from the load's start to the first fault and between faults")
	fs.StringVar(&c.Root, "root", "../..", "the repository's root")
	fs.StringVar(&c.Local, "local", "", "the private stack's state folder (default ROOT/.local/chaos)")
	fs.StringVar(&c.Out, "out", "", "folder for report.json, report.md and the logs (default ROOT/.local/chaos/run-<time>)")
	fs.IntVar(&c.PGPort, "pg-port", 35432, "port of the private PostgreSQL")
	fs.IntVar(&c.KafkaPort, "kafka-port", 39092, "port of the private Kafka broker")
	fs.IntVar(&c.KafkaControllerPort, "kafka-controller-port", 39093, "controller port of the private Kafka broker")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.Single != "" {
		c.Orders, c.Kills, c.Pauses, c.Kafka, c.Postgres, c.Poisons, c.Net = singleOrders(c), 0, 0, 0, 0, 0, 0
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	root, err := filepath.Abs(c.Root)
	if err != nil {
		return c, fmt.Errorf("-root: %w", err)
	}
	c.Root = root
	if _, err := os.Stat(filepath.Join(root, "tools", "infra.sh")); err != nil {
		return c, fmt.Errorf("-root %s: not Sagashop's repository (no tools/infra.sh)", root)
	}
	if c.Local == "" {
		c.Local = filepath.Join(root, ".local", "chaos")
	}
	if c.Out == "" {
		c.Out = filepath.Join(c.Local, "run-"+time.Now().UTC().Format("20060102T150405Z"))
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	c.Log = stderr
	return c, nil
}

func (c config) validate() error {
	var problems []error
	if c.Orders < 1 || c.Rate <= 0 {
		problems = append(problems, errors.New("-orders must be at least 1 and -rate above 0"))
	}
	if c.Kills < 0 || c.Pauses < 0 || c.Kafka < 0 || c.Postgres < 0 || c.Poisons < 0 || c.Net < 0 {
		problems = append(problems, errors.New("fault counts must not be negative"))
	}
	if c.Pause <= 0 || c.Drain <= 0 {
		problems = append(problems, errors.New("-pause and -drain must be positive"))
	}
	if c.Customers < 1 || c.SKUs < 1 {
		problems = append(problems, errors.New("-customers and -skus must be at least 1"))
	}
	if c.Single != "" && (!slices.Contains(singleKinds, c.Single) || c.SingleCount < 1 || c.SingleGap < 10*time.Second) {
		problems = append(problems, fmt.Errorf("-single %q: must be one of %v, with -single-count at least 1 and -single-gap at least 10s", c.Single, singleKinds))
	}
	for _, p := range []int{c.PGPort, c.KafkaPort, c.KafkaControllerPort} {
		if p < 1 || p > 65535 {
			problems = append(problems, fmt.Errorf("port %d out of range", p))
		}
	}
	return errors.Join(problems...)
}

// logf prints a progress line with the time since start.
type logger struct {
	w     io.Writer
	start time.Time
}

func (l *logger) printf(format string, args ...any) {
	fmt.Fprintf(l.w, "[chaos %6.1fs] %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

// run is one whole run; ok is false when an invariant failed. err is for a
// run that could not be carried out (the stack did not start).
func run(ctx context.Context, cfg config, stdout io.Writer) (ok bool, err error) {
	log := &logger{w: cfg.Log, start: time.Now()}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return false, err
	}
	fmt.Fprintf(stdout, "chaos: seed %d, %d orders at %.0f/s, %d kills, %d pauses, %d Kafka and %d PostgreSQL restarts, %d network faults, %d poison messages; out %s\n",
		cfg.Seed, cfg.Orders, cfg.Rate, cfg.Kills, cfg.Pauses, cfg.Kafka, cfg.Postgres, cfg.Net, cfg.Poisons, cfg.Out)

	st := newStack(cfg, log)
	defer st.close()
	if err := st.startInfra(ctx); err != nil {
		return false, err
	}
	if err := st.startServices(ctx); err != nil {
		return false, err
	}
	fx, err := setUpFixtures(ctx, st, cfg)
	if err != nil {
		return false, fmt.Errorf("fixtures: %w", err)
	}

	p := plan(cfg)
	if cfg.Single != "" {
		p = singlePlan(cfg)
	}
	h := newHistory(cfg, fx)
	log.printf("load and faults for %s: %d faults planned", cfg.window().Round(time.Second), len(p))
	loadStart := time.Now()
	inj := &injector{st: st, log: log}
	faultsDone := make(chan []faultRecord)
	go func() { faultsDone <- inj.run(ctx, p, loadStart) }()
	h.send(ctx, st, loadStart)
	loadEnd := time.Now()
	records := <-faultsDone
	log.printf("faults over; healing")
	if err := st.heal(ctx); err != nil {
		return false, fmt.Errorf("heal: %w", err)
	}
	healed := time.Now()
	log.printf("healed; resolving %d requests without an answer", h.unresolved())
	h.resolve(ctx, st, healed.Add(cfg.Drain))
	res := checkAll(ctx, st, cfg, fx, h, inj.poisonKeys(), healed)
	rep := newReport(cfg, h, records, loadStart, loadEnd, healed, res, st.unexpectedExits())
	if err := rep.write(cfg.Out); err != nil {
		return false, err
	}
	rep.markdown(stdout)
	if cfg.Single != "" {
		sr, err := measureSingle(ctx, st, cfg, h, records, loadStart)
		if err != nil {
			return false, err
		}
		if err := sr.write(cfg.Out); err != nil {
			return false, err
		}
		sr.markdown(stdout)
	}
	return rep.Passed, ctx.Err()
}
