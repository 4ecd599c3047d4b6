package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sagashop/sagashop/pkg/broker"
)

// report is relay.json.
type report struct {
	Settings settings                 `json:"settings"`
	Drain    map[string]*drainSeries  `json:"drain,omitempty"`
	Steady   map[string]*steadySeries `json:"steady,omitempty"`
	Ratios   map[string]float64       `json:"ratios"`
}

type settings struct {
	Command          string         `json:"command"`
	Sagashop         string         `json:"sagashop_commit"`
	Go               string         `json:"go"`
	Started          time.Time      `json:"started"`
	Finished         time.Time      `json:"finished"`
	LoadAvgStart     string         `json:"loadavg_start"`
	LoadAvgEnd       string         `json:"loadavg_end"`
	CPUs             int            `json:"cpus"`
	Events           int            `json:"events"`
	Keys             int            `json:"keys"`
	PerTx            int            `json:"events_per_tx"`
	Rate             float64        `json:"rate"`
	Steady           string         `json:"steady"`
	Writers          int            `json:"writers"`
	Repeat           int            `json:"repeat"`
	Partitions       int            `json:"partitions"`
	SagashopRelay    map[string]any `json:"sagashop_relay"`
	WatermillRelay   map[string]any `json:"watermill_relay"`
	CPUMeasuredFrom  string         `json:"cpu_measured_from"`
	LatencyMeasuring string         `json:"latency"`
}

type drainSeries struct {
	Runs   []drainResult `json:"runs"`
	Median drainResult   `json:"median"`
}

type steadySeries struct {
	Runs   []steadyResult `json:"runs"`
	Median steadyResult   `json:"median"`
}

func newReport(cfg config) *report {
	poll := func(d time.Duration, def string) string {
		if d == 0 {
			return def
		}
		return d.String()
	}
	batch := "500 (default)"
	if cfg.relay.SagashopBatch > 0 {
		batch = fmt.Sprint(cfg.relay.SagashopBatch)
	}
	return &report{
		Settings: settings{
			Command:      "go run . " + strings.Join(cfg.args, " "),
			Sagashop:     gitHead(),
			Go:           runtime.Version(),
			Started:      time.Now().UTC().Truncate(time.Second),
			LoadAvgStart: loadAvg(),
			CPUs:         runtime.NumCPU(),
			Events:       cfg.events, Keys: cfg.keys, PerTx: cfg.perTx,
			Rate: cfg.rate, Steady: cfg.steady.String(), Writers: cfg.writers,
			Repeat: cfg.repeat, Partitions: partitions,
			SagashopRelay: map[string]any{
				"relay":         "outbox.NewRelay, no tracing, no metrics",
				"batch_size":    batch,
				"poll_interval": poll(cfg.relay.SagashopPoll, "1s (default; woken by NOTIFY)"),
				"publisher":     writerSettings(),
				"write":         "outbox.Write per event",
			},
			WatermillRelay: map[string]any{
				"relay":                "forwarder.NewForwarder(watermill-sql Subscriber, watermill-kafka Publisher), NopLogger",
				"poll_interval":        cfg.relay.WatermillPoll.String(),
				"subscribe_batch_size": cfg.relay.WatermillBatch,
				"schema_adapter":       "DefaultPostgreSQLSchema",
				"offsets_adapter":      "DefaultPostgreSQLOffsetsAdapter",
				"publisher":            fmt.Sprintf("watermill-kafka v3 sync producer (sarama), acks %s, protocol %s, partitioning marshaler keyed by ce_subject (sarama hash partitioner)", cfg.relay.WatermillAcks, cfg.relay.WatermillVersion),
				"write":                "forwarder.NewPublisher(watermill-sql Publisher on the transaction).Publish per event",
			},
			CPUMeasuredFrom:  "relay process: utime+stime of /proc/<pid>/stat from the start signal (drain) or after a warm-up event (steady) to the last event consumed; db: the same for the PostgreSQL backends with the relay's application_name",
			LatencyMeasuring: "from the writer's Commit returning to the parent's kafka-go reader receiving the message, one clock",
		},
		Drain:  map[string]*drainSeries{},
		Steady: map[string]*steadySeries{},
		Ratios: map[string]float64{},
	}
}

// writerSettings describes the producer broker.NewWriter returns, read off
// it, since pkg/broker's settings change under this tool.
func writerSettings() string {
	w := broker.NewWriter([]string{"127.0.0.1:9092"})
	defer w.Close()
	return fmt.Sprintf("broker.NewWriter: kafka-go, required acks %v, %T balancer, batch timeout %s, batch size %d",
		w.RequiredAcks, w.Balancer, w.BatchTimeout, w.BatchSize)
}

func (r *report) addDrain(kind string, d drainResult) {
	s := r.Drain[kind]
	if s == nil {
		s = &drainSeries{}
		r.Drain[kind] = s
	}
	s.Runs = append(s.Runs, d)
}

func (r *report) addSteady(kind string, d steadyResult) {
	s := r.Steady[kind]
	if s == nil {
		s = &steadySeries{}
		r.Steady[kind] = s
	}
	s.Runs = append(s.Runs, d)
}

// medianOf is the median of one field over runs.
func medianOf[T any](runs []T, f func(T) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return median(xs)
}

func (r *report) finish() {
	r.Settings.Finished = time.Now().UTC().Truncate(time.Second)
	r.Settings.LoadAvgEnd = loadAvg()
	for _, s := range r.Drain {
		m := func(f func(drainResult) float64) float64 { return medianOf(s.Runs, f) }
		s.Median = drainResult{
			Events:          int(m(func(d drainResult) float64 { return float64(d.Events) })),
			FillSeconds:     m(func(d drainResult) float64 { return d.FillSeconds }),
			Seconds:         m(func(d drainResult) float64 { return d.Seconds }),
			EventsPerSec:    m(func(d drainResult) float64 { return d.EventsPerSec }),
			CPUUsPerEvent:   m(func(d drainResult) float64 { return d.CPUUsPerEvent }),
			DBCPUUsPerEvent: m(func(d drainResult) float64 { return d.DBCPUUsPerEvent }),
			Inversions:      int(m(func(d drainResult) float64 { return float64(d.Inversions) })),
			Duplicates:      int(m(func(d drainResult) float64 { return float64(d.Duplicates) })),
			Missing:         int(m(func(d drainResult) float64 { return float64(d.Missing) })),
		}
	}
	for _, s := range r.Steady {
		m := func(f func(steadyResult) float64) float64 { return medianOf(s.Runs, f) }
		s.Median = steadyResult{
			Rate:            m(func(d steadyResult) float64 { return d.Rate }),
			AchievedRate:    m(func(d steadyResult) float64 { return d.AchievedRate }),
			Events:          int(m(func(d steadyResult) float64 { return float64(d.Events) })),
			P50Ms:           m(func(d steadyResult) float64 { return d.P50Ms }),
			P99Ms:           m(func(d steadyResult) float64 { return d.P99Ms }),
			MaxMs:           m(func(d steadyResult) float64 { return d.MaxMs }),
			CPUUsPerEvent:   m(func(d steadyResult) float64 { return d.CPUUsPerEvent }),
			DBCPUUsPerEvent: m(func(d steadyResult) float64 { return d.DBCPUUsPerEvent }),
			Inversions:      int(m(func(d steadyResult) float64 { return float64(d.Inversions) })),
			Duplicates:      int(m(func(d steadyResult) float64 { return float64(d.Duplicates) })),
			Missing:         int(m(func(d steadyResult) float64 { return float64(d.Missing) })),
		}
	}
	if s, w := r.Drain[kindSagashop], r.Drain[kindWatermill]; s != nil && w != nil {
		r.Ratios["drain_events_per_sec"] = ratio(s.Median.EventsPerSec, w.Median.EventsPerSec)
		r.Ratios["drain_cpu_us_per_event"] = ratio(s.Median.CPUUsPerEvent, w.Median.CPUUsPerEvent)
		r.Ratios["drain_db_cpu_us_per_event"] = ratio(s.Median.DBCPUUsPerEvent, w.Median.DBCPUUsPerEvent)
	}
	if s, w := r.Steady[kindSagashop], r.Steady[kindWatermill]; s != nil && w != nil {
		r.Ratios["steady_p50_ms"] = ratio(s.Median.P50Ms, w.Median.P50Ms)
		r.Ratios["steady_p99_ms"] = ratio(s.Median.P99Ms, w.Median.P99Ms)
		r.Ratios["steady_cpu_us_per_event"] = ratio(s.Median.CPUUsPerEvent, w.Median.CPUUsPerEvent)
		r.Ratios["steady_db_cpu_us_per_event"] = ratio(s.Median.DBCPUUsPerEvent, w.Median.DBCPUUsPerEvent)
	}
}

func (r *report) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "relay.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "relay.md"), []byte(r.markdown()), 0o644)
}

func (r *report) markdown() string {
	var b strings.Builder
	st := r.Settings
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("### Outbox relay: Sagashop vs Watermill's SQL forwarder\n\n")
	p("```sh\ncd tools/relaybench && %s\n```\n\n", st.Command)
	p("Sagashop %s, %s, %d CPUs, load average %s at the start, %s at the end (%s to %s UTC). ",
		orDash(st.Sagashop), st.Go, st.CPUs, st.LoadAvgStart, st.LoadAvgEnd, st.Started.Format("15:04"), st.Finished.Format("15:04"))
	p("Each relay in a child process; the two alternate, %d repeats each, medians. ", st.Repeat)
	p("Drain: %d events over %d keys, %d per transaction, committed before the relay starts. ", st.Events, st.Keys, st.PerTx)
	p("Steady: %.0f events/s, one per transaction, %d writers, for %s. Topics of %d partitions.\n\n", st.Rate, st.Writers, st.Steady, st.Partitions)
	p("- Sagashop: %s; BatchSize %v, PollInterval %v; %s; %s.\n", st.SagashopRelay["relay"], st.SagashopRelay["batch_size"], st.SagashopRelay["poll_interval"], st.SagashopRelay["publisher"], st.SagashopRelay["write"])
	p("- Watermill v1.5.1, watermill-sql v4.1.2, watermill-kafka v3.0.6: %s; PollInterval %v, SubscribeBatchSize %v; %s; %s.\n\n",
		st.WatermillRelay["relay"], st.WatermillRelay["poll_interval"], st.WatermillRelay["subscribe_batch_size"], st.WatermillRelay["publisher"], st.WatermillRelay["write"])
	p("Watermill's defaults in this tool (PollInterval 1ms, SubscribeBatchSize 1000, acks all, protocol 1.0.0) were the fastest in short trials of PollInterval 1/10/50 ms, SubscribeBatchSize 100/1000, acks all/leader and protocol 1.0.0/3.6.0; its forwarder publishes one message at a time with a sync producer, so the producer's batching settings have nothing to batch.\n\n")
	p("CPU: %s. Latency: %s.\n\n", st.CPUMeasuredFrom, st.LatencyMeasuring)

	if len(r.Drain) > 0 {
		p("| drain | events/s | relay CPU µs/event | PostgreSQL CPU µs/event | inversions | duplicates | per repeat, events/s |\n|---|---|---|---|---|---|---|\n")
		for _, k := range []string{kindSagashop, kindWatermill} {
			s := r.Drain[k]
			if s == nil {
				continue
			}
			var each []string
			for _, d := range s.Runs {
				each = append(each, fmt.Sprintf("%.0f", d.EventsPerSec))
			}
			m := s.Median
			p("| %s | %.0f | %.1f | %.1f | %d | %d | %s |\n", k, m.EventsPerSec, m.CPUUsPerEvent, m.DBCPUUsPerEvent, m.Inversions, m.Duplicates, strings.Join(each, ", "))
		}
		p("\n")
	}
	if len(r.Steady) > 0 {
		p("| steady | achieved rate | p50 ms | p99 ms | max ms | relay CPU µs/event | PostgreSQL CPU µs/event | per repeat, p99 ms |\n|---|---|---|---|---|---|---|---|\n")
		for _, k := range []string{kindSagashop, kindWatermill} {
			s := r.Steady[k]
			if s == nil {
				continue
			}
			var each []string
			for _, d := range s.Runs {
				each = append(each, fmt.Sprintf("%.1f", d.P99Ms))
			}
			m := s.Median
			p("| %s | %.0f/s | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n", k, m.AchievedRate, m.P50Ms, m.P99Ms, m.MaxMs, m.CPUUsPerEvent, m.DBCPUUsPerEvent, strings.Join(each, ", "))
		}
		p("\n")
	}
	if len(r.Ratios) > 0 {
		var parts []string
		for _, k := range []struct{ key, label string }{
			{"drain_events_per_sec", "drain events/s"},
			{"drain_cpu_us_per_event", "drain relay CPU per event"},
			{"drain_db_cpu_us_per_event", "drain PostgreSQL CPU per event"},
			{"steady_p50_ms", "steady p50"},
			{"steady_p99_ms", "steady p99"},
			{"steady_cpu_us_per_event", "steady relay CPU per event"},
			{"steady_db_cpu_us_per_event", "steady PostgreSQL CPU per event"},
		} {
			if v, ok := r.Ratios[k.key]; ok {
				parts = append(parts, fmt.Sprintf("%s %.2f×", k.label, v))
			}
		}
		p("Ratios Sagashop / Watermill (medians): %s.\n", strings.Join(parts, "; "))
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
