package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Single-fault mode (-single KIND): -single-count faults of one kind, the
// first -single-gap after the load starts and each -single-gap after the one
// before, nothing else injected, so each fault's cost can be read alone.
// Per fault it reports the longest send->terminal of the orders placed from
// 5 s before the fault to its end, and how long after the fault's end the
// orders placed were back to normal: every one placed in the next 5 s took
// at most twice the p99 of those placed before the first fault (and at
// least that p99 + 0.5 s). Send->terminal is from an order's scheduled send
// to the order service's updated_at of its terminal status (one clock, the
// machine's).

// singlePlan is the plan of a single-fault run: kills and pauses strike the
// services in turn, one at a time; a kill restarts the service after 1 s,
// a pause lasts -pause, Kafka is down 5 s, PostgreSQL 2 s.
func singlePlan(cfg config) []fault {
	var out []fault
	for i := range cfg.SingleCount {
		f := fault{At: time.Duration(i+1) * cfg.SingleGap, Kind: cfg.Single}
		switch cfg.Single {
		case faultKill:
			f.Services, f.Hold = []string{services[i%len(services)]}, time.Second
		case faultPause:
			f.Services, f.Hold = []string{services[i%len(services)]}, cfg.Pause
		case faultKafka:
			f.Hold = 5 * time.Second
		case faultPostgres:
			f.Hold = 2 * time.Second
		}
		out = append(out, f)
	}
	return out
}

var singleKinds = []string{faultKill, faultPause, faultKafka, faultPostgres}

// singleOrders is enough orders at -rate for every fault and a gap after the last.
func singleOrders(cfg config) int {
	return int(cfg.Rate * (time.Duration(cfg.SingleCount+1) * cfg.SingleGap).Seconds())
}

// latencySample is one acknowledged order: when it was first sent and how
// long it took from then until the order service recorded it terminal.
type latencySample struct {
	sent, took float64 // seconds after the load started
}

// singleFault is one fault's cost.
type singleFault struct {
	Kind     string   `json:"kind"`
	Services []string `json:"services,omitempty"`
	At       float64  `json:"at_s"`
	End      float64  `json:"end_s"`
	// Orders: acknowledged during the load, placed from 5 s before the
	// fault to its end; Longest: the longest send->terminal of them.
	Orders  int     `json:"orders"`
	Longest float64 `json:"longest_s"`
	// Refused: placed then too, acknowledged only by the retry after heal
	// (every try during the load failed); not in Orders nor Longest.
	Refused int `json:"refused"`
	// Recovered: seconds after the fault's end until the orders placed
	// (every one in the next 5 s) took no longer than the normal bound.
	Recovered float64 `json:"recovered_s"`
	Error     string  `json:"error,omitempty"`
}

// singleResult is a single-fault run's measurement.
type singleResult struct {
	Kind     string        `json:"kind"`
	Seed     uint64        `json:"seed"`
	Rate     float64       `json:"rate"`
	Baseline float64       `json:"baseline_p99_s"` // orders placed before the first fault
	Normal   float64       `json:"normal_bound_s"` // max(2 × baseline, baseline + 0.5 s)
	Faults   []singleFault `json:"faults"`
	// Median and max over the faults.
	LongestMedian   float64 `json:"longest_median_s"`
	LongestMax      float64 `json:"longest_max_s"`
	RecoveredMedian float64 `json:"recovered_median_s"`
	RecoveredMax    float64 `json:"recovered_max_s"`
	Unterminated    int     `json:"unterminated"` // acknowledged, not terminal after the drain
	Load            string  `json:"load"`         // /proc/loadavg at the end
}

// measureSingle reads when every acknowledged order became terminal
// (order_svc.orders.updated_at of a SHIPPED or CANCELLED order) and computes
// each fault's cost.
func measureSingle(ctx context.Context, st *stack, cfg config, h *history, recs []faultRecord, loadStart time.Time) (singleResult, error) {
	res := singleResult{Kind: cfg.Single, Seed: cfg.Seed, Rate: cfg.Rate}
	done := map[string]float64{}
	rows, err := st.admin.Query(ctx, `SELECT id::text, extract(epoch FROM updated_at)::float8 FROM order_svc.orders WHERE status IN ('SHIPPED', 'CANCELLED')`)
	if err != nil {
		return res, fmt.Errorf("read terminal times: %w", err)
	}
	for rows.Next() {
		var id string
		var at float64
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return res, fmt.Errorf("read terminal times: %w", err)
		}
		done[id] = at - float64(loadStart.UnixNano())/1e9
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("read terminal times: %w", err)
	}
	var samples []latencySample
	var refused []float64
	h.mu.Lock()
	for _, o := range h.ops {
		if !o.Ack || len(o.Attempts) == 0 {
			continue
		}
		if o.AckAfterHeal {
			// Refused throughout the fault (the load's tries span 2 s):
			// counted per fault, not timed, since its wait is the load's.
			refused = append(refused, o.Intended)
			continue
		}
		// The first attempt was sent at about Intended; its At is when it returned.
		sent := o.Intended
		end, ok := done[o.ID]
		if !ok {
			res.Unterminated++
			end = 1e9
		}
		samples = append(samples, latencySample{sent: sent, took: end - sent})
	}
	h.mu.Unlock()
	first := float64(len(h.ops)) / cfg.Rate
	if len(recs) > 0 {
		first = recs[0].At
	}
	var base []float64
	for _, s := range samples {
		if s.sent >= 5 && s.sent < first-5 {
			base = append(base, s.took)
		}
	}
	res.Baseline = percentile(base, 0.99)
	res.Normal = max(2*res.Baseline, res.Baseline+0.5)
	var longest, recovered []float64
	for _, r := range recs {
		f := singleFault{Kind: r.Kind, Services: r.Services, At: r.At, End: r.At + r.Took, Error: r.Error}
		for _, s := range samples {
			if s.sent >= f.At-5 && s.sent <= f.End {
				f.Orders++
				f.Longest = max(f.Longest, s.took)
			}
		}
		for _, sent := range refused {
			if sent >= f.At-5 && sent <= f.End {
				f.Refused++
			}
		}
		f.Recovered = recoveredAfter(samples, f.At, res.Normal) - f.End
		f.Recovered = max(f.Recovered, 0)
		longest, recovered = append(longest, f.Longest), append(recovered, f.Recovered)
		res.Faults = append(res.Faults, f)
	}
	res.LongestMedian, res.LongestMax = percentile(longest, 0.5), percentile(longest, 1)
	res.RecoveredMedian, res.RecoveredMax = percentile(recovered, 0.5), percentile(recovered, 1)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Load = string(b[:min(len(b), 14)])
	}
	return res, nil
}

// recoveredAfter is the earliest send time t >= from such that every order
// sent in [t, t+5 s] took at most bound.
func recoveredAfter(samples []latencySample, from, bound float64) float64 {
	var after []latencySample
	for _, s := range samples {
		if s.sent >= from {
			after = append(after, s)
		}
	}
	slices.SortFunc(after, func(a, b latencySample) int {
		switch {
		case a.sent < b.sent:
			return -1
		case a.sent > b.sent:
			return 1
		}
		return 0
	})
	// The last slow order sent before t+5 s decides: t is just after the
	// latest slow one whose next 5 s hold only fast ones.
	t := from
	for _, s := range after {
		if s.sent > t+5 {
			break
		}
		if s.took > bound {
			t = s.sent
		}
	}
	return t
}

// percentile of xs (nearest rank); 0 for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func (r singleResult) markdown(w io.Writer) {
	fmt.Fprintf(w, "\n## Single fault: %s (seed %d, %.0f orders/s, load %s)\n\n", r.Kind, r.Seed, r.Rate, r.Load)
	fmt.Fprintf(w, "Normal: p99 send->terminal before the first fault %.2f s; recovered = orders placed take <= %.2f s again.\n\n", r.Baseline, r.Normal)
	fmt.Fprintln(w, "| fault | services | at | ends | orders placed -5 s..end | refused (acknowledged after heal) | longest send->terminal of the others | recovered after end |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, f := range r.Faults {
		fmt.Fprintf(w, "| %s | %v | %.1f s | %.1f s | %d | %d | %.1f s | %.1f s |\n", f.Kind, f.Services, f.At, f.End, f.Orders, f.Refused, f.Longest, f.Recovered)
	}
	fmt.Fprintf(w, "\n**%s**: longest median %.1f s, max %.1f s; recovered median %.1f s, max %.1f s; %d acknowledged orders not terminal.\n",
		r.Kind, r.LongestMedian, r.LongestMax, r.RecoveredMedian, r.RecoveredMax, r.Unterminated)
}

func (r singleResult) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "single.json"), b, 0o644)
}
