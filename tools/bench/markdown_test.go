package main

import (
	"strings"
	"testing"
)

func TestReplaceSection(t *testing.T) {
	const b, e = beginMarker + "\n", endMarker + "\n"
	tests := []struct {
		name, doc, section, want, err string
	}{
		{"empty section", "# T\n\nintro\n" + b + e + "rest\n", "NEW\n", "# T\n\nintro\n" + b + "NEW\n" + e + "rest\n", ""},
		{"old section replaced", "# T\n" + b + "old\nlines\n" + e + "rest\n", "NEW\n", "# T\n" + b + "NEW\n" + e + "rest\n", ""},
		{"a newline added", "x\n" + b + e, "NEW", "x\n" + b + "NEW\n" + e, ""},
		{"markers indented or with trailing space", "x\n  " + beginMarker + " \nold\n" + endMarker + "\ny", "N\n", "x\n  " + beginMarker + " \nN\n" + endMarker + "\ny", ""},
		{"end marker last line without newline", "x\n" + b + "old\n" + endMarker, "N\n", "x\n" + b + "N\n" + endMarker, ""},
		{"markers inside a line are not markers", "see `" + beginMarker + "` here\n" + b + e, "N\n", "see `" + beginMarker + "` here\n" + b + "N\n" + e, ""},
		{"no markers", "# T\nintro\n", "N\n", "", "no line"},
		{"no end", "# T\n" + b + "x\n", "N\n", "", "no line"},
		{"end first", e + b, "N\n", "", "comes before"},
		{"two begins", b + b + e, "N\n", "", "twice"},
		{"two ends", b + e + e, "N\n", "", "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replaceSection(tt.doc, tt.section)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
			// Idempotent: the same section again changes nothing.
			again, err := replaceSection(got, tt.section)
			if err != nil || again != got {
				t.Errorf("second replace: %q, %v", again, err)
			}
		})
	}
}

func TestRenderSection(t *testing.T) {
	d := &benchData{
		Started: "2026-12-01T10:00:00Z", LoadBefore: "0.50 0.40 0.30", LoadAfter: "1.00 0.90 0.80",
		Command: "BENCH_RATES='100 500' make bench",
		Env:     &envSnapshot{NProc: 2, CPUModel: "AMD EPYC", MemoryGiB: 23.5, Go: "go1.26.8", GitHead: "abc1234", GitChanged: 1, Postgres: "15.18", Kafka: "4.1.1", Jaeger: "2.13.0"},
		Variants: []*variant{{Name: "shipped", Runs: append(runs(rep(100, 99, 12, 40), withProblems(rep(500, 300, 5e3, 9e3), 4)),
			&benchRun{Rate: 1000, Exit: 1, ReadErr: "no report written", Command: "sagashopctl load -rate 1000"})}},
	}
	got := renderSection(d, []plotFile{{File: "latency.png", Title: "latency | rate", Link: "bench/latency.png"}}, ".local/bench/x", "/repo")
	for _, want := range []string{
		"2 cores (nproc), AMD EPYC, 23.5 GiB", "0.50 0.40 0.30 before, 1.00 0.90 0.80 after",
		"git abc1234 (dirty tree: 1 changed, 0 untracked files)", "PostgreSQL 15.18; Kafka 4.1.1; Jaeger 2.13.0",
		"BENCH_RATES='100 500' make bench", "sagashopctl load -rate 1000",
		"| at 100/s, send → SHIPPED p50 ≤ 15 ms and p99 ≤ 50 ms | shipped | met (measured p50 12.0 ms, p99 40.0 ms) |",
		"≤ 2 CPU-ms per order (the system's processes summed) at 500/s | shipped | not met (measured 1.50 ms; 4 invariant violations) |",
		"| relay | not measured (the relay comparison did not run) |",
		"Knee: between 100/s (kept up) and 500/s",
		"| 100 | 6000 of 6000 | 99.0 | 2.0 ms | 9.0 ms | 12.0 ms | 40.0 ms | 9.6 ms | 36.0 ms | 3.00 | 1.50 | postgres 0.80, order 0.40, kafka 0.30 | 0 |",
		"- 500/s: 4 invariant violations", "… and 1 more",
		"- 1000/s: sagashopctl load exited with status 1; no report written",
		"![latency | rate](bench/latency.png)",
		"Not run",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("section lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, beginMarker) || strings.Contains(got, endMarker) {
		t.Error("the section holds a marker")
	}

	d.Relay = &relayData{Exit: 0, Markdown: "## Relay\n\n| a | b |\n\ngo run . -out /repo/.local/bench/x/relay\n", Command: "make bench-relay BENCH_OUT=x"}
	got = renderSection(d, nil, "x", "/repo")
	if !strings.Contains(got, "## Relay\n\n| a | b |\n\ngo run . -out .local/bench/x/relay\n") || !strings.Contains(got, "make bench-relay BENCH_OUT=x") {
		t.Errorf("relay.md not included verbatim:\n%s", got)
	}
}

func TestRenderSectionIncompleteCPU(t *testing.T) {
	r := rep(50, 50, 10, 30)
	r.CPUByProcessMS = map[string]float64{"postgres": 0, "order": 0.5, "jaeger": 0}
	d := &benchData{Variants: []*variant{{Name: "shipped", Runs: runs(r)}}}
	got := renderSection(d, nil, "x", "")
	for _, want := range []string{"| 0.50 (incomplete) |", "CPU by process incomplete: no CPU counted for postgres ("} {
		if !strings.Contains(got, want) {
			t.Errorf("section lacks %q:\n%s", want, got)
		}
	}
}
