package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// report is a run's outcome: report.json (with the whole history) and
// report.md.
type report struct {
	Seed    uint64  `json:"seed"`
	Command string  `json:"command"`
	Machine string  `json:"machine"`
	Passed  bool    `json:"passed"`
	Orders  int     `json:"orders"`
	Rate    float64 `json:"rate_per_s"`
	// Load held: the achieved rate of first attempts over the window.
	SentRate   float64        `json:"sent_rate_per_s"`
	LoadS      float64        `json:"load_s"`
	FaultsS    float64        `json:"faults_s"` // from the load's start to heal
	Acked      int            `json:"acknowledged"`
	AckedLate  int            `json:"acknowledged_after_heal"`
	Retried    int            `json:"orders_retried"` // POSTed more than once
	Outcomes   map[string]int `json:"outcomes"`       // "SHIPPED", "CANCELLED payment_failed", ...
	Faults     map[string]int `json:"faults"`         // by kind; kills count processes
	KillsBusy  int            `json:"kills_in_flight"`
	Skipped    int            `json:"faults_short"` // struck fewer services than planned (the rest were down)
	FaultErrs  []string       `json:"fault_errors,omitempty"`
	SelfExits  []string       `json:"unexpected_exits,omitempty"`
	Results    results        `json:"results"`
	FaultsList []faultRecord  `json:"fault_list"`
	History    []*op          `json:"history"`
}

func newReport(cfg config, h *history, faults []faultRecord, loadStart, loadEnd, healed time.Time, res results, exits []string) *report {
	r := &report{
		Seed: cfg.Seed, Orders: cfg.Orders, Rate: cfg.Rate,
		Command: strings.Join(append([]string{"chaos"}, os.Args[1:]...), " "),
		Machine: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU()),
		LoadS:   loadEnd.Sub(loadStart).Seconds(), FaultsS: healed.Sub(loadStart).Seconds(),
		Outcomes: map[string]int{}, Faults: map[string]int{},
		Results: res, FaultsList: faults, History: h.ops, SelfExits: exits,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				r.Machine += ", " + strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	var lastFirst float64
	for _, o := range h.ops {
		if len(o.Attempts) > 0 {
			lastFirst = max(lastFirst, o.Attempts[0].At)
		}
		if len(o.Attempts) > 1 {
			r.Retried++
		}
		if o.Ack {
			r.Acked++
			if o.AckAfterHeal {
				r.AckedLate++
			}
			r.Outcomes[strings.TrimSpace(o.Final+" "+o.Reason)]++
		}
	}
	if lastFirst > 0 {
		r.SentRate = float64(len(h.ops)-1) / lastFirst
	}
	for _, f := range faults {
		n := 1
		if f.Kind == faultPause {
			n = len(f.Services) // none when skipped
		}
		if f.Kind == faultKill {
			n = len(f.Services)
			for _, fl := range f.InFlight {
				if fl.busy() {
					r.KillsBusy++
				}
			}
		}
		if f.Skipped {
			r.Skipped++
		}
		if f.Error == "" {
			if n > 0 {
				r.Faults[f.Kind] += n
			}
		} else {
			r.FaultErrs = append(r.FaultErrs, fmt.Sprintf("%s at %.1fs: %s", f.Kind, f.At, f.Error))
		}
	}
	// Each invariant holds, or, with -sabotage, fails exactly when it was
	// sabotaged.
	r.Passed = len(r.FaultErrs) == 0 && res.Error == ""
	for _, inv := range res.Invariants {
		r.Passed = r.Passed && inv.OK != res.Sabotaged[inv.ID]
	}
	return r
}

func (r *report) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), b, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "report.md"))
	if err != nil {
		return err
	}
	r.markdown(f)
	return f.Close()
}

func (r *report) markdown(w io.Writer) {
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "## Chaos run, seed %d: %s\n\n", r.Seed, verdict)
	fmt.Fprintf(w, "- command: `%s`\n- machine: %s\n", r.Command, r.Machine)
	fmt.Fprintf(w, "- load: %d orders offered at %.0f/s, sent at %.1f/s (first attempts) over %.1fs; %d POSTed more than once (same Idempotency-Key)\n",
		r.Orders, r.Rate, r.SentRate, r.LoadS, r.Retried)
	fmt.Fprintf(w, "- acknowledged: %d (%d only by the retry after heal)\n", r.Acked, r.AckedLate)
	fmt.Fprintf(w, "- faults (load start to heal: %.1fs): %s; %d of the service kills hit work in flight (outbox rows or consumer lag)\n",
		r.FaultsS, counts(r.Faults), r.KillsBusy)
	if r.Skipped > 0 {
		fmt.Fprintf(w, "- %d kills or pauses struck fewer services than planned: every other service stayed down or paused by other faults for 20 s\n", r.Skipped)
	}
	if t := r.Results.TerminalAfterHeal; t >= 0 {
		fmt.Fprintf(w, "- every acknowledged order terminal %.1fs after heal\n", t)
	} else {
		fmt.Fprintf(w, "- NOT every acknowledged order terminal within the drain after heal\n")
	}
	fmt.Fprintf(w, "- outcomes: %s\n", counts(r.Outcomes))
	for _, e := range r.FaultErrs {
		fmt.Fprintf(w, "- fault error: %s\n", e)
	}
	for _, e := range r.SelfExits {
		fmt.Fprintf(w, "- unexpected exit: %s\n", e)
	}
	if r.Results.Sabotaged != nil {
		fmt.Fprintf(w, "- sabotage (checking the checker): the invariants marked sabotaged were broken on purpose after the drain and must fail\n")
	}
	if r.Results.Error != "" {
		fmt.Fprintf(w, "- error: %s\n", r.Results.Error)
	}
	fmt.Fprintf(w, "\n| invariant | result |\n|---|---|\n")
	for _, inv := range r.Results.Invariants {
		res := "ok"
		if !inv.OK {
			res = fmt.Sprintf("**FAILED** (%d): %s", inv.Count, strings.Join(inv.Violations, "; "))
		}
		if r.Results.Sabotaged[inv.ID] {
			res = "sabotaged, " + res
		}
		fmt.Fprintf(w, "| %s | %s |\n", inv.Name, res)
	}
	fmt.Fprintln(w)
}

// counts prints a map as "k n, k n" in key order.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(slices.Clip(parts), ", ")
}
