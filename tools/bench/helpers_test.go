package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// rep is a load report of a run at rate that ended every order within
// the window, with the given send → SHIPPED percentiles and throughput.
func rep(rate, throughput, p50, p99 float64) *loadReport {
	n := int(rate * 60)
	return &loadReport{
		OfferedRate: rate, DurationSeconds: 60, Placed: n, Accepted: n, Terminal: n,
		TerminalRate: throughput, SustainedPerSec: throughput,
		Accept: latency{N: n, P50: 2, P99: 9},
		Outcomes: map[string]latency{
			"shipped":   {N: n * 8 / 10, P50: p50, P99: p99},
			"cancelled": {N: n * 2 / 10, P50: p50 * 0.8, P99: p99 * 0.9},
		},
		CPUMachineMS:   3,
		CPUByProcessMS: map[string]float64{"postgres": 0.8, "order": 0.4, "java": 0.3},
	}
}

func runs(reps ...*loadReport) []*benchRun {
	var out []*benchRun
	for _, r := range reps {
		out = append(out, &benchRun{Variant: "shipped", Rate: r.OfferedRate, Exit: 0, Report: r})
	}
	return out
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
