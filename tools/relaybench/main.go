// Command relaybench measures Sagashop's outbox relay (pkg/outbox) side by
// side with Watermill's SQL forwarder (components/forwarder over
// watermill-sql's PostgreSQL subscriber, publishing with watermill-kafka),
// on the same PostgreSQL and Kafka, in one run, the two alternating:
//
//   - drain: -events events over -keys keys are committed, -per-tx to a
//     transaction, while no relay runs; then the relay starts and is timed
//     until a reader has every event: events/s, the relay's CPU µs per
//     event, its PostgreSQL backends' CPU µs per event, and per-key order
//     inversions (an event on Kafka after one of its key committed later).
//   - steady: -writers commit -rate events/s, one per transaction, for
//     -steady; commit → consumed latency p50/p99/max and CPU µs per event.
//
// Each relay runs in a child process (this binary's "relay" subcommand), so
// its CPU time is read from /proc/<pid>/stat; the writers and the Kafka
// readers run in the parent. Each kind gets a fresh schema in a database of
// the run's own (relaybench_<run id>, dropped at the end) and each
// measurement a fresh 3-partition topic, deleted afterwards. Writes are the way each relay's
// users write: outbox.Write for Sagashop, forwarder.NewPublisher over
// watermill-sql's publisher bound to the transaction for Watermill.
//
// Run it from this folder against the local stack (make infra-up):
//
//	go run . -out DIR                        # the full run, a few minutes
//	go run . -out DIR -events 2000 -rate 100 -steady 5s -repeat 1   # smoke
//
// It writes DIR/relay.json (settings, every repeat, medians, ratios) and
// DIR/relay.md (the same as a markdown section) and prints a progress line
// per measurement on stderr. -kinds and -phases run a part, e.g. to try
// Watermill's settings (-watermill-poll, -watermill-batch, -watermill-acks).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "relay" {
		err = runRelay(ctx, os.Args[2:], os.Stdin, os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

// config is the parent's flags.
type config struct {
	out     string
	adminDB string
	brokers []string
	events  int
	keys    int
	perTx   int
	rate    float64
	steady  time.Duration
	writers int
	repeat  int
	timeout time.Duration
	kinds   []string
	phases  []string
	relay   relaySettings
	profile string
	args    []string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.StringVar(&c.out, "out", "", "folder for relay.json and relay.md (required)")
	fs.StringVar(&c.adminDB, "db", testenv.DatabaseURL(), "URL of a database on the server, to create the relaybench database from")
	brokers := fs.String("brokers", strings.Join(testenv.Brokers(), ","), "Kafka brokers, comma-separated")
	fs.IntVar(&c.events, "events", 20000, "drain: backlog events")
	fs.IntVar(&c.keys, "keys", 1000, "keys (order ids) the events are spread over")
	fs.IntVar(&c.perTx, "per-tx", 100, "drain: events per transaction")
	fs.Float64Var(&c.rate, "rate", 200, "steady: events per second, one per transaction")
	fs.DurationVar(&c.steady, "steady", 30*time.Second, "steady: how long the writers write")
	fs.IntVar(&c.writers, "writers", 4, "steady: concurrent writers")
	fs.IntVar(&c.repeat, "repeat", 3, "repetitions of each measurement; medians are quoted")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up waiting for a measurement's events after this long")
	kinds := fs.String("kinds", "sagashop,watermill", "relays to measure")
	phases := fs.String("phases", "drain,steady", "measurements to run")
	fs.StringVar(&c.profile, "profile", "", "write a CPU profile of each relay child into this folder (it costs the relay some CPU)")
	c.relay.register(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.args = args
	c.brokers = strings.Split(*brokers, ",")
	c.kinds = strings.Split(*kinds, ",")
	c.phases = strings.Split(*phases, ",")
	var problems []string
	if c.out == "" {
		problems = append(problems, "-out is required")
	}
	if c.events < 1 || c.keys < 1 || c.perTx < 1 || c.writers < 1 || c.repeat < 1 {
		problems = append(problems, "-events, -keys, -per-tx, -writers and -repeat must be at least 1")
	}
	if c.rate <= 0 || c.steady <= 0 {
		problems = append(problems, "-rate and -steady must be positive")
	}
	for _, k := range c.kinds {
		if k != kindSagashop && k != kindWatermill {
			problems = append(problems, fmt.Sprintf("-kinds: unknown %q", k))
		}
	}
	for _, p := range c.phases {
		if p != "drain" && p != "steady" {
			problems = append(problems, fmt.Sprintf("-phases: unknown %q", p))
		}
	}
	if _, err := saramaConfig(c.relay); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return c, errors.New(strings.Join(problems, "; "))
	}
	return c, nil
}

func run(ctx context.Context, args []string, progress io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	for _, d := range []string{cfg.out, cfg.profile} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	if err := broker.Ping(ctx, cfg.brokers); err != nil {
		return err
	}
	runID := strings.TrimPrefix(testenv.Name("r"), "r_")
	dbName := "relaybench_" + runID
	dbURL, err := createDatabase(ctx, cfg.adminDB, dbName)
	if err != nil {
		return err
	}
	defer dropDatabase(cfg.adminDB, dbName)
	admin, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("open database %s: %w", dbName, err)
	}
	defer admin.Close()
	b := &bench{cfg: cfg, dbURL: dbURL, admin: admin, tick: clockTick(), self: self, runID: runID}

	rep := newReport(cfg)
	total := cfg.repeat * len(cfg.phases) * len(cfg.kinds)
	done := 0
	for r := range cfg.repeat {
		// Alternate which relay goes first, so neither always runs on the
		// warmer (or the more loaded) half of the run.
		kinds := slices.Clone(cfg.kinds)
		if r%2 == 1 {
			slices.Reverse(kinds)
		}
		for _, phase := range cfg.phases {
			for _, kind := range kinds {
				done++
				prefix := fmt.Sprintf("[%d/%d] %s %s, repeat %d:", done, total, phase, kind, r+1)
				switch phase {
				case "drain":
					res, err := b.drain(ctx, kind, r)
					if err != nil {
						return fmt.Errorf("%s %w", prefix, err)
					}
					rep.addDrain(kind, res)
					fmt.Fprintf(progress, "relaybench: %s %d events in %.2fs (fill %.1fs): %.0f events/s, %.1f µs CPU/event (PostgreSQL %.1f), %d inversions, %d duplicates; load %s\n",
						prefix, res.Events, res.Seconds, res.FillSeconds, res.EventsPerSec, res.CPUUsPerEvent, res.DBCPUUsPerEvent, res.Inversions, res.Duplicates, loadAvg())
				case "steady":
					res, err := b.steady(ctx, kind, r)
					if err != nil {
						return fmt.Errorf("%s %w", prefix, err)
					}
					rep.addSteady(kind, res)
					fmt.Fprintf(progress, "relaybench: %s %d events at %.0f/s: p50 %.1f ms, p99 %.1f ms, max %.1f ms, %.1f µs CPU/event (PostgreSQL %.1f), %d inversions; load %s\n",
						prefix, res.Events, res.AchievedRate, res.P50Ms, res.P99Ms, res.MaxMs, res.CPUUsPerEvent, res.DBCPUUsPerEvent, res.Inversions, loadAvg())
				}
			}
		}
	}
	rep.finish()
	return rep.write(cfg.out)
}

// createDatabase creates the run's database, relaybench_<run id>, on the
// server of adminURL and returns its URL. A name of the run's own keeps two
// runs on one server apart; databases left by runs that died are dropped
// first, unless something is still connected to them (a run going on).
func createDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL (start the local stack with `make infra-up`): %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'relaybench\_%'`)
	if err != nil {
		return "", fmt.Errorf("list databases: %w", err)
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("list databases: %w", err)
	}
	for _, db := range stale {
		// Fails while another run uses it, which is what we want.
		_, _ = conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize())
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func dropDatabase(adminURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err == nil {
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "relaybench: drop database %s: %v\n", name, err)
	}
}

// gitHead is the commit the Sagashop module is at, with "+dirty" when
// pkg/outbox or pkg/broker have uncommitted changes, or "".
func gitHead() string {
	root := filepath.Join("..", "..")
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	head := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "pkg/outbox", "pkg/broker", "pkg/events").Output(); err == nil && len(st) > 0 {
		head += "+dirty"
	}
	return head
}
