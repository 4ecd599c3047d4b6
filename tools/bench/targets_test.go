package main

import (
	"strings"
	"testing"
)

func withProblems(r *loadReport, n int) *loadReport {
	for range n {
		r.Problems = append(r.Problems, "order x (ship): status \"PAID\" at the deadline, want terminal")
	}
	return r
}

func short(r *loadReport, seconds float64) *loadReport {
	r.DurationSeconds = seconds
	r.Placed = int(r.OfferedRate * seconds)
	r.Terminal = r.Placed
	return r
}

func TestSystemTargets(t *testing.T) {
	cpu := func(r *loadReport, m map[string]float64) *loadReport { r.CPUByProcessMS = m; return r }
	tests := []struct {
		name   string
		target func([]*benchRun) string
		runs   []*benchRun
		want   string // the result's start
		holds  []string
	}{
		{"latency met", latencyTarget, runs(rep(50, 50, 5, 9), rep(100, 99, 12, 40)), "met", []string{"p50 12.0 ms", "p99 40.0 ms"}},
		{"latency p99 missed", latencyTarget, runs(rep(100, 99, 12, 51)), "not met", []string{"p99 51.0 ms"}},
		{"latency p50 missed", latencyTarget, runs(rep(100, 99, 16, 40)), "not met", []string{"p50 16.0 ms"}},
		{"latency with violations", latencyTarget, runs(withProblems(rep(100, 99, 12, 40), 2)), "not met", []string{"2 invariant violations"}},
		{"latency no run at 100", latencyTarget, runs(rep(50, 50, 5, 9), rep(200, 199, 5, 9)), "not measured", []string{"no run at 100/s"}},
		{"latency run without report", latencyTarget, []*benchRun{{Rate: 100, Exit: 1, ReadErr: "no report written"}}, "not measured", []string{"no report written"}},

		{"capacity met", capacityTarget, runs(rep(1000, 990, 100, 800)), "met", []string{"1000 orders/s over 60s"}},
		{"capacity met at 1500", capacityTarget, runs(rep(1000, 990, 100, 800), rep(1500, 1480, 100, 900)), "met", nil},
		{"capacity p99 too high", capacityTarget, runs(rep(1000, 990, 100, 1000)), "not met", []string{"p99 1.00 s"}},
		{"capacity short run", capacityTarget, runs(short(rep(1000, 990, 100, 500), 10)), "not measured", []string{"≥ 60 s"}},
		{"capacity knee below", capacityTarget, runs(rep(200, 199, 10, 20), rep(500, 300, 5e3, 9e3)), "not met", []string{"past the knee at 500/s"}},
		{"capacity knee in a short run says nothing", capacityTarget, runs(short(rep(50, 20, 5e3, 9e3), 5)), "not measured", nil},
		{"capacity not run", capacityTarget, runs(rep(200, 199, 10, 20)), "not measured", nil},
		{"capacity not all ended", capacityTarget, runs(withProblems(rep(1000, 990, 100, 800), 1)), "not met", []string{"1 invariant violations"}},

		{"cpu met", cpuTarget, runs(rep(500, 499, 10, 20)), "met", []string{"1.50 ms"}},
		{"cpu missed", cpuTarget, runs(cpu(rep(500, 499, 10, 20), map[string]float64{"postgres": 1.5, "order": 0.6})), "not met", []string{"2.10 ms"}},
		{"cpu not measured", cpuTarget, runs(rep(200, 199, 10, 20)), "not measured", []string{"no run at 500/s"}},
		{"cpu: saturated below 500/s", cpuTarget, runs(rep(100, 99, 10, 20), rep(200, 120, 10, 20)), "not met", []string{"past the knee at 200/s", "1.50 ms per order there"}},
		{"cpu no processes", cpuTarget, runs(cpu(rep(500, 499, 10, 20), nil)), "not measured", nil},
		{"cpu of a process missing", cpuTarget, runs(cpu(rep(500, 499, 10, 20), map[string]float64{"postgres": 0, "order": 0.6, "jaeger": 0})), "not measured", []string{"no CPU for postgres"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.target(tt.runs)
			if verdictOf(got) != tt.want {
				t.Errorf("result %q, want it to be %q", got, tt.want)
			}
			for _, h := range tt.holds {
				if !strings.Contains(got, h) {
					t.Errorf("result %q lacks %q", got, h)
				}
			}
		})
	}
}

// verdictOf is "met", "not met" or "not measured".
func verdictOf(result string) string {
	for _, v := range []string{"not measured", "not met", "met"} {
		if strings.HasPrefix(result, v) {
			return v
		}
	}
	return result
}

func TestRelayTargets(t *testing.T) {
	const both = `{"settings": {"rate": 200},
		"drain": {"sagashop": {"median": {"events_per_sec": %s}}, "watermill": {"median": {"events_per_sec": 1000}}},
		"steady": {"sagashop": {"median": {"rate": 200, "events": 6000, "p99_ms": %s, "cpu_us_per_event": %s, "db_cpu_us_per_event": 10}},
		           "watermill": {"median": {"rate": 200, "events": 6000, "p99_ms": 20, "cpu_us_per_event": 300, "db_cpu_us_per_event": 200}}}}`
	relay := func(drain, p99, cpu string) *relayData {
		return &relayData{JSON: []byte(fmtJSON(both, drain, p99, cpu))}
	}
	tests := []struct {
		name          string
		relay         *relayData
		drain, steady string
	}{
		{"not run", nil, "not measured", "not measured"},
		{"no json", &relayData{Markdown: "x"}, "not measured", "not measured"},
		{"unreadable", &relayData{JSON: []byte("{")}, "not measured", "not measured"},
		{"both met", relay("12000", "15", "80"), "met", "met"},
		{"drain 9x", relay("9000", "15", "80"), "not met", "met"},
		{"p99 above watermill's", relay("12000", "25", "80"), "met", "not met"},
		{"cpu above a fifth", relay("12000", "15", "95"), "met", "not met"},
		{"only one relay", &relayData{JSON: []byte(`{"drain": {"sagashop": {"median": {"events_per_sec": 5}}}}`)}, "not measured", "not measured"},
		{"lost events", &relayData{JSON: []byte(`{"drain": {"sagashop": {"median": {"events_per_sec": 50000, "missing": 3}}, "watermill": {"median": {"events_per_sec": 1000}}}}`)}, "not met", "not measured"},
		{"another steady rate", &relayData{JSON: []byte(`{"settings": {"rate": 100}, "steady": {"sagashop": {"median": {"events": 1, "p99_ms": 1, "cpu_us_per_event": 1}}, "watermill": {"median": {"events": 1, "p99_ms": 2, "cpu_us_per_event": 100}}}}`)}, "not measured", "not measured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := relayTargets(tt.relay)
			if len(rows) != 2 {
				t.Fatalf("%d rows, want 2", len(rows))
			}
			if got := verdictOf(rows[0].Result); got != tt.drain {
				t.Errorf("drain: %q, want %q", rows[0].Result, tt.drain)
			}
			if got := verdictOf(rows[1].Result); got != tt.steady {
				t.Errorf("steady: %q, want %q", rows[1].Result, tt.steady)
			}
		})
	}
}

func fmtJSON(format string, args ...string) string {
	for _, a := range args {
		format = strings.Replace(format, "%s", a, 1)
	}
	return format
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
