package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// loadReport is the part of sagashopctl load's -json report the bench uses
// (tools/sagashopctl/report.go, loadReport).
type loadReport struct {
	Run             string             `json:"run"`
	OfferedRate     float64            `json:"offered_rate"`
	DurationSeconds float64            `json:"duration_seconds"`
	Placed          int                `json:"placed"`
	Accepted        int                `json:"accepted"`
	Terminal        int                `json:"terminal"`
	TerminalRate    float64            `json:"terminal_rate"`
	SustainedPerSec float64            `json:"sustained_per_sec"`
	Accept          latency            `json:"accept"`
	Outcomes        map[string]latency `json:"outcomes"` // "shipped", "cancelled"
	CPUMachineMS    float64            `json:"cpu_machine_ms_per_order"`
	CPUByProcessMS  map[string]float64 `json:"cpu_ms_per_order_by_process"`
	Problems        []string           `json:"problems"`
}

// latency holds percentiles in milliseconds; N 0 means no sample.
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// cpuSum is the CPU per order of the system's processes, summed (the
// machine's figure also holds the load generator and everything else on
// the box).
func (r *loadReport) cpuSum() float64 {
	var s float64
	for _, v := range r.CPUByProcessMS {
		s += v
	}
	return s
}

// cpuMissing names the system's processes that count no CPU at all in a
// run whose orders ended: they all did work, so their figure is wrong.
// sagashopctl sums the CPU of every process of a name on the machine before
// it subtracts, so when processes of that name end during the run (a test's
// services, PostgreSQL backends of closed connections, on a shared machine),
// the difference goes negative and is reported as 0.
func (r *loadReport) cpuMissing() []string {
	if r.Terminal == 0 || len(r.CPUByProcessMS) == 0 {
		return nil
	}
	var out []string
	for _, n := range slices.Sorted(maps.Keys(r.CPUByProcessMS)) {
		if n != "jaeger" && r.CPUByProcessMS[n] <= 0 {
			out = append(out, n)
		}
	}
	return out
}

func readLoadReport(file string) (*loadReport, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read load report: %w", err)
	}
	var r loadReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode load report %s: %w", file, err)
	}
	if r.OfferedRate <= 0 {
		return nil, fmt.Errorf("load report %s: no offered_rate", file)
	}
	return &r, nil
}

// A bench directory is what bench.sh leaves in .local/bench/<timestamp>/:
//
//	<variant>-<rate>.json   sagashopctl load -json of one run (-rate <rate>)
//	<variant>-<rate>.log    its output
//	env.json                bench env at the start
//	manifest.tsv            one record a line, fields separated by tabs:
//	    started   <RFC 3339 time>
//	    finished  <RFC 3339 time>
//	    loadavg   before|after  <the 1, 5 and 15 minute load averages>
//	    command   <the command line of the whole bench>
//	    variant   <name>  <environment of the services, "" for none>
//	    run       <variant>  <rate>  <exit status>  <json file>  <command>
//	    idle      <variant>  <rate>  <seconds waited>  ok|<what was still busy>
//	    relay     <exit status>  <directory>  <command>
//	relay/                  make bench-relay's -out: relay.json and relay.md
//
// Without a manifest, the runs are the <variant>-<rate>.json files found;
// a run the manifest names whose file is missing (the load failed before it
// wrote one) is kept, with its exit status.
type benchData struct {
	Dir        string
	Started    string
	Finished   string
	LoadBefore string
	LoadAfter  string
	Command    string
	Env        *envSnapshot // nil: no env.json
	Variants   []*variant
	Relay      *relayData // nil: the comparison did not run
}

type variant struct {
	Name string
	Env  string // the services' extra environment
	Runs []*benchRun
}

type benchRun struct {
	Variant string
	Rate    float64
	File    string // in the bench directory
	Command string
	Exit    int // -1: not recorded
	Idle    string
	IdleSec float64
	Report  *loadReport // nil: none could be read (ReadErr says why)
	ReadErr string
	LogTail string // without a report: the last line of <variant>-<rate>.log
}

// relayData is the relay comparison's output, as found.
type relayData struct {
	Exit     int // -1: not recorded
	Command  string
	Markdown string // relay.md, verbatim
	JSON     []byte // relay.json
}

func (d *benchData) runCount() int {
	n := 0
	for _, v := range d.Variants {
		n += len(v.Runs)
	}
	return n
}

func (d *benchData) variant(name string) *variant {
	for _, v := range d.Variants {
		if v.Name == name {
			return v
		}
	}
	v := &variant{Name: name}
	d.Variants = append(d.Variants, v)
	return v
}

func (v *variant) run(rate float64) *benchRun {
	for _, r := range v.Runs {
		if r.Rate == rate {
			return r
		}
	}
	r := &benchRun{Variant: v.Name, Rate: rate, Exit: -1}
	v.Runs = append(v.Runs, r)
	return r
}

// readBench reads a bench directory.
func readBench(dir string) (*benchData, error) {
	d := &benchData{Dir: dir}
	if err := d.readManifest(filepath.Join(dir, "manifest.tsv")); err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, f := range files {
		name, rate, ok := parseRunFile(filepath.Base(f))
		if !ok {
			continue
		}
		r := d.variant(name).run(rate)
		if r.File == "" {
			r.File = filepath.Base(f)
		}
	}
	for _, v := range d.Variants {
		slices.SortFunc(v.Runs, func(a, b *benchRun) int { return cmp.Compare(a.Rate, b.Rate) })
		for _, r := range v.Runs {
			if r.File == "" {
				r.ReadErr = "no report file"
				continue
			}
			rep, err := readLoadReport(filepath.Join(dir, r.File))
			if err != nil {
				r.ReadErr = err.Error()
				if errors.Is(err, fs.ErrNotExist) {
					r.ReadErr = "no report written"
				}
				r.LogTail = lastLine(filepath.Join(dir, strings.TrimSuffix(r.File, ".json")+".log"))
				continue
			}
			r.Report = rep
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "env.json")); err == nil {
		var e envSnapshot
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, "env.json"), err)
		}
		d.Env = &e
	}
	if err := d.readRelay(); err != nil {
		return nil, err
	}
	if d.runCount() == 0 && d.Relay == nil {
		return nil, fmt.Errorf("%s: no load reports (<variant>-<rate>.json) and no relay comparison", dir)
	}
	return d, nil
}

// parseRunFile splits "<variant>-<rate>.json"; the variant may hold
// dashes, the rate is the part after the last one.
func parseRunFile(base string) (variant string, rate float64, ok bool) {
	stem, found := strings.CutSuffix(base, ".json")
	if !found {
		return "", 0, false
	}
	i := strings.LastIndexByte(stem, '-')
	if i <= 0 {
		return "", 0, false
	}
	r, err := strconv.ParseFloat(stem[i+1:], 64)
	if err != nil || r <= 0 {
		return "", 0, false
	}
	return stem[:i], r, true
}

func (d *benchData) readManifest(file string) error {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open manifest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if err := d.manifestLine(sc.Text()); err != nil {
			return fmt.Errorf("%s:%d: %w", file, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	return nil
}

func (d *benchData) manifestLine(line string) error {
	if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
		return nil
	}
	f := strings.Split(line, "\t")
	want := func(n int) error {
		if len(f) < n {
			return fmt.Errorf("%s record: %d fields, want %d", f[0], len(f), n)
		}
		return nil
	}
	switch f[0] {
	case "started", "finished", "command":
		if err := want(2); err != nil {
			return err
		}
		v := strings.Join(f[1:], "\t")
		switch f[0] {
		case "started":
			d.Started = v
		case "finished":
			d.Finished = v
		default:
			d.Command = v
		}
	case "loadavg":
		if err := want(3); err != nil {
			return err
		}
		if f[1] == "before" {
			d.LoadBefore = loadAvg(f[2])
		} else {
			d.LoadAfter = loadAvg(f[2])
		}
	case "variant":
		if err := want(2); err != nil {
			return err
		}
		v := d.variant(f[1])
		if len(f) > 2 {
			v.Env = f[2]
		}
	case "run":
		if err := want(6); err != nil {
			return err
		}
		rate, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return fmt.Errorf("run record: rate %q: %w", f[2], err)
		}
		exit, err := strconv.Atoi(f[3])
		if err != nil {
			return fmt.Errorf("run record: exit status %q: %w", f[3], err)
		}
		r := d.variant(f[1]).run(rate)
		r.Exit, r.File, r.Command = exit, f[4], f[5]
	case "idle":
		if err := want(5); err != nil {
			return err
		}
		rate, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			return fmt.Errorf("idle record: rate %q: %w", f[2], err)
		}
		secs, _ := strconv.ParseFloat(f[3], 64)
		r := d.variant(f[1]).run(rate)
		r.IdleSec, r.Idle = secs, f[4]
	case "relay":
		if err := want(4); err != nil {
			return err
		}
		exit, err := strconv.Atoi(f[1])
		if err != nil {
			return fmt.Errorf("relay record: exit status %q: %w", f[1], err)
		}
		if d.Relay == nil {
			d.Relay = &relayData{}
		}
		d.Relay.Exit, d.Relay.Command = exit, f[3]
	default:
		// Records a later bench.sh may add are no reason to refuse a report.
	}
	return nil
}

// readRelay finds relay.json and relay.md in relay/ or in the directory
// itself.
func (d *benchData) readRelay() error {
	for _, sub := range []string{"relay", "."} {
		md, errMD := os.ReadFile(filepath.Join(d.Dir, sub, "relay.md"))
		js, errJS := os.ReadFile(filepath.Join(d.Dir, sub, "relay.json"))
		if errMD != nil && errJS != nil {
			continue
		}
		if d.Relay == nil {
			d.Relay = &relayData{Exit: -1}
		}
		if errMD == nil {
			d.Relay.Markdown = string(md)
		}
		if errJS == nil {
			d.Relay.JSON = js
		}
		return nil
	}
	return nil
}

// lastLine is the last non-empty line of file, "" when there is none.
func lastLine(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
