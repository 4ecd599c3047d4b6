package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cpuSample is CPU time used so far: by the whole machine (busy, not idle
// or iowait) and by each process whose name was asked for (so all of
// PostgreSQL's backends count). minus sums them by name.
type cpuSample struct {
	Machine time.Duration
	ByPID   map[int]procCPU
}

type procCPU struct {
	Name string
	Used time.Duration
}

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTick = 100

func sampleCPU(names []string) cpuSample {
	s := cpuSample{ByPID: map[int]procCPU{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		var busy int64
		for i := 1; i < len(f); i++ {
			if i == 4 || i == 5 {
				continue
			}
			v, _ := strconv.ParseInt(f[i], 10, 64)
			busy += v
		}
		s.Machine = ticks(busy)
	}
	if len(names) == 0 {
		return s
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		comm, err := os.ReadFile(d + "/comm")
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		if !slices.Contains(names, name) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// The command may hold spaces; the fields after it start at ") ".
		_, rest, ok := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest)
		if !ok || len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		s.ByPID[pid] = procCPU{Name: name, Used: ticks(utime + stime)}
	}
	return s
}

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }

// cpuUsed is the CPU used between two samples: by the machine and by
// process name.
type cpuUsed struct {
	Machine time.Duration
	ByName  map[string]time.Duration
}

// minus is the CPU used between earlier and s, summed by name over the
// processes s saw: what each used since earlier, or all it used if it started
// in between (a pid earlier did not see under that name). A process that
// ended before s is not counted at all, rather than subtracted from the
// others of its name.
func (s cpuSample) minus(earlier cpuSample) cpuUsed {
	d := cpuUsed{Machine: s.Machine - earlier.Machine, ByName: map[string]time.Duration{}}
	for pid, p := range s.ByPID {
		used := p.Used
		if e, ok := earlier.ByPID[pid]; ok && e.Name == p.Name && e.Used <= p.Used {
			used -= e.Used
		}
		d.ByName[p.Name] += used
	}
	return d
}

// loadReport is the outcome of a run, printed and written as JSON for the
// benchmark's report.
type loadReport struct {
	Run              string                    `json:"run"`
	OfferedRate      float64                   `json:"offered_rate"`
	DurationSeconds  float64                   `json:"duration_seconds"`
	Seed             uint64                    `json:"seed"`
	Placed           int                       `json:"placed"`
	Accepted         int                       `json:"accepted"`
	Retried          int                       `json:"post_retried"` // orders whose POST was repeated with its Idempotency-Key
	Terminal         int                       `json:"terminal"`
	TerminalRate     float64                   `json:"terminal_rate"`     // orders ending per second, over the offered window
	SustainedPerSec  float64                   `json:"sustained_per_sec"` // terminal orders / (last end - first send)
	Accept           latency                   `json:"accept"`            // POST /orders answered, from the intended send
	Outcomes         map[string]latency        `json:"outcomes"`          // send to terminal, by final status
	CPUMachineMS     float64                   `json:"cpu_machine_ms_per_order"`
	CPUByProcessMS   map[string]float64        `json:"cpu_ms_per_order_by_process"`
	ScenarioOutcomes map[string]map[string]int `json:"scenario_outcomes"`
	Problems         []string                  `json:"problems"`
}

// latency holds percentiles in milliseconds.
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func newLatency(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		return float64(ds[max(i, 0)]) / float64(time.Millisecond)
	}
	return latency{N: len(ds), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: at(1)}
}

func newReport(cfg loadConfig, run string, records []*orderRecord, start time.Time, cpu cpuUsed, problems []string) *loadReport {
	rep := &loadReport{
		Run: run, OfferedRate: cfg.Rate, DurationSeconds: cfg.Duration.Seconds(), Seed: cfg.Seed, Placed: len(records),
		Outcomes: map[string]latency{}, CPUByProcessMS: map[string]float64{}, ScenarioOutcomes: map[string]map[string]int{},
		Problems: problems,
	}
	var accept []time.Duration
	byOutcome := map[string][]time.Duration{}
	windowEnd := start.Add(cfg.Duration)
	inWindow := 0
	var lastEnd time.Time
	for _, r := range records {
		if r.Status != 0 {
			accept = append(accept, r.Accepted)
		}
		if r.ID == "" {
			continue
		}
		rep.Accepted++
		if r.Retries > 0 {
			rep.Retried++
		}
		if rep.ScenarioOutcomes[r.Scenario] == nil {
			rep.ScenarioOutcomes[r.Scenario] = map[string]int{}
		}
		outcome := r.Final
		if r.Reason != "" {
			outcome += " " + r.Reason
		}
		rep.ScenarioOutcomes[r.Scenario][outcome]++
		if r.Final != "SHIPPED" && r.Final != "CANCELLED" {
			continue
		}
		rep.Terminal++
		byOutcome[strings.ToLower(r.Final)] = append(byOutcome[strings.ToLower(r.Final)], r.UpdatedAt.Sub(r.Intended))
		if !r.UpdatedAt.After(windowEnd) {
			inWindow++
		}
		if r.UpdatedAt.After(lastEnd) {
			lastEnd = r.UpdatedAt
		}
	}
	rep.Accept = newLatency(accept)
	for k, v := range byOutcome {
		rep.Outcomes[k] = newLatency(v)
	}
	rep.TerminalRate = float64(inWindow) / cfg.Duration.Seconds()
	if rep.Terminal > 0 && lastEnd.After(start) {
		rep.SustainedPerSec = float64(rep.Terminal) / lastEnd.Sub(start).Seconds()
		perOrder := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(rep.Terminal) }
		rep.CPUMachineMS = perOrder(cpu.Machine)
		for n, d := range cpu.ByName {
			rep.CPUByProcessMS[n] = perOrder(d)
		}
	}
	return rep
}

func (r *loadReport) print(w io.Writer) {
	fmt.Fprintf(w, "placed %d, accepted %d, terminal %d; %.1f orders/s ended within the %gs offered window, %.1f/s from first send to last end\n",
		r.Placed, r.Accepted, r.Terminal, r.TerminalRate, r.DurationSeconds, r.SustainedPerSec)
	if r.Retried > 0 {
		fmt.Fprintf(w, "  %d accepted only after repeating the POST with its Idempotency-Key (no answer or a 5xx at first)\n", r.Retried)
	}
	row := func(name string, l latency) {
		fmt.Fprintf(w, "  %-22s n=%-6d p50 %8.1f ms  p90 %8.1f ms  p99 %8.1f ms  max %8.1f ms\n", name, l.N, l.P50, l.P90, l.P99, l.Max)
	}
	row("POST /orders answered", r.Accept)
	for _, k := range slices.Sorted(maps.Keys(r.Outcomes)) {
		row("send → "+strings.ToUpper(k), r.Outcomes[k])
	}
	for _, sc := range slices.Sorted(maps.Keys(r.ScenarioOutcomes)) {
		fmt.Fprintf(w, "  scenario %-13s %v\n", sc, r.ScenarioOutcomes[sc])
	}
	fmt.Fprintf(w, "  CPU per order: %.2f ms for the machine", r.CPUMachineMS)
	for _, n := range slices.Sorted(maps.Keys(r.CPUByProcessMS)) {
		fmt.Fprintf(w, "; %s %.2f", n, r.CPUByProcessMS[n])
	}
	fmt.Fprintln(w)
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "invariants: every order terminal with its scenario's outcome, one shipment per shipped order, one email each, money and stock conserved: OK")
		return
	}
	fmt.Fprintf(w, "invariants: %d violations\n", len(r.Problems))
	for i, p := range r.Problems {
		if i == 20 {
			fmt.Fprintf(w, "  ... and %d more\n", len(r.Problems)-20)
			break
		}
		fmt.Fprintln(w, "  "+p)
	}
}
