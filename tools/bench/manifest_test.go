package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRunFile(t *testing.T) {
	tests := []struct {
		base    string
		variant string
		rate    float64
		ok      bool
	}{
		{"shipped-100.json", "shipped", 100, true},
		{"sampled-1500.json", "sampled", 1500, true},
		{"no-tracing-12.5.json", "no-tracing", 12.5, true},
		{"env.json", "", 0, false},
		{"relay.json", "", 0, false},
		{"shipped-100.log", "", 0, false},
		{"-100.json", "", 0, false},
		{"shipped-0.json", "", 0, false},
		{"shipped-x.json", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.base, func(t *testing.T) {
			v, r, ok := parseRunFile(tt.base)
			if v != tt.variant || r != tt.rate || ok != tt.ok {
				t.Errorf("parseRunFile = %q, %g, %v; want %q, %g, %v", v, r, ok, tt.variant, tt.rate, tt.ok)
			}
		})
	}
}

func TestReadBench(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "shipped-100.json"), rep(100, 99, 12, 40))
	writeJSON(t, filepath.Join(dir, "shipped-50.json"), rep(50, 50, 10, 30))
	writeJSON(t, filepath.Join(dir, "sampled-50.json"), rep(50, 50, 8, 20))
	writeJSON(t, filepath.Join(dir, "env.json"), envSnapshot{NProc: 2, Kafka: "4.1.1"})
	if err := os.MkdirAll(filepath.Join(dir, "relay"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "relay", "relay.md"), []byte("## relay\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shipped-200.log"), []byte("load L1: 200 orders/s\nsagashopctl: fixtures: boom\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := strings.Join([]string{
		"command\tBENCH_RATES='50 100 200' make bench",
		"started\t2026-12-01T10:00:00Z",
		"loadavg\tbefore\t0.10 0.20 0.30",
		"variant\tshipped\t",
		"run\tshipped\t50\t0\tshipped-50.json\tsagashopctl load -rate 50",
		"idle\tshipped\t50\t6\tok",
		"run\tshipped\t100\t0\tshipped-100.json\tsagashopctl load -rate 100",
		"run\tshipped\t200\t1\tshipped-200.json\tsagashopctl load -rate 200",
		"idle\tshipped\t200\t300\toutbox pending 12, consumer lag 40",
		"variant\tsampled\tOTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01",
		"run\tsampled\t50\t0\tsampled-50.json\tsagashopctl load -rate 50",
		"relay\t2\trelay\tmake bench-relay BENCH_OUT=x",
		"something-new\tignored",
		"loadavg\tafter\t1.0 2.0 3.0 4/200 1234",
		"finished\t2026-12-01T11:00:00Z",
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "manifest.tsv"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}

	d, err := readBench(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Command != "BENCH_RATES='50 100 200' make bench" || d.Started != "2026-12-01T10:00:00Z" || d.Finished != "2026-12-01T11:00:00Z" ||
		d.LoadBefore != "0.10 0.20 0.30" || d.LoadAfter != "1.0 2.0 3.0" {
		t.Errorf("header records: %+v", d)
	}
	if d.Env == nil || d.Env.Kafka != "4.1.1" {
		t.Errorf("env: %+v", d.Env)
	}
	if len(d.Variants) != 2 || d.Variants[0].Name != "shipped" || d.Variants[1].Name != "sampled" ||
		!strings.HasPrefix(d.Variants[1].Env, "OTEL_TRACES_SAMPLER=") {
		t.Fatalf("variants: %+v", d.Variants)
	}
	sh := d.Variants[0].Runs
	if len(sh) != 3 || sh[0].Rate != 50 || sh[1].Rate != 100 || sh[2].Rate != 200 {
		t.Fatalf("shipped runs: %+v", sh)
	}
	if sh[0].Report == nil || sh[0].Idle != "ok" || sh[0].Command != "sagashopctl load -rate 50" {
		t.Errorf("run at 50: %+v", sh[0])
	}
	if sh[2].Report != nil || sh[2].Exit != 1 || sh[2].ReadErr != "no report written" || sh[2].IdleSec != 300 ||
		sh[2].LogTail != "sagashopctl: fixtures: boom" {
		t.Errorf("run at 200 (no file): %+v", sh[2])
	}
	if d.Relay == nil || d.Relay.Exit != 2 || d.Relay.Markdown != "## relay\n" || d.Relay.JSON != nil {
		t.Errorf("relay: %+v", d.Relay)
	}
}

func TestReadBenchWithoutManifest(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "shipped-200.json"), rep(200, 199, 12, 40))
	writeJSON(t, filepath.Join(dir, "shipped-50.json"), rep(50, 50, 10, 30))
	writeJSON(t, filepath.Join(dir, "relay.json"), map[string]any{"drain": map[string]any{}})
	d, err := readBench(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Variants) != 1 || len(d.Variants[0].Runs) != 2 || d.Variants[0].Runs[0].Rate != 50 || d.Variants[0].Runs[0].Exit != -1 {
		t.Errorf("variants: %+v", d.Variants)
	}
	if d.Relay == nil || d.Relay.JSON == nil || d.Relay.Exit != -1 {
		t.Errorf("relay: %+v", d.Relay)
	}
}

func TestReadBenchErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		err   string
	}{
		{"empty", nil, "no load reports"},
		{"bad manifest", map[string]string{"manifest.tsv": "run\tshipped\tfast\t0\tx.json\tcmd\n"}, "manifest.tsv:1"},
		{"short record", map[string]string{"manifest.tsv": "run\tshipped\n"}, "fields"},
		{"bad env", map[string]string{"shipped-5.json": `{"offered_rate": 5}`, "env.json": "{"}, "env.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := readBench(dir)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("err = %v, want one saying %q", err, tt.err)
			}
		})
	}
}

func TestReadBenchBadReport(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shipped-5.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := readBench(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := d.Variants[0].Runs[0]
	if r.Report != nil || !strings.Contains(r.ReadErr, "decode") {
		t.Errorf("run: %+v", r)
	}
}
