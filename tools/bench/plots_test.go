package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// synthetic is a small bench of two variants, one run past the knee and
// one without a report, the shape a real bench leaves.
func synthetic() *benchData {
	shipped := runs(rep(50, 50, 20, 60), rep(100, 99, 25, 90), rep(200, 150, 4000, 9000))
	sampled := runs(rep(50, 50, 12, 30), rep(100, 99, 14, 45), rep(200, 198, 30, 120))
	sampled = append(sampled, &benchRun{Variant: "sampled", Rate: 500, Exit: 1, ReadErr: "no report written"})
	return &benchData{Variants: []*variant{{Name: "shipped", Runs: shipped}, {Name: "sampled", Runs: sampled}}}
}

func TestDrawPlots(t *testing.T) {
	tests := []struct {
		name string
		data *benchData
	}{
		{"two variants", synthetic()},
		{"one run", &benchData{Variants: []*variant{{Name: "shipped", Runs: runs(rep(20, 20, 30, 60))}}}},
		{"no reports", &benchData{Variants: []*variant{{Name: "shipped", Runs: []*benchRun{{Rate: 50, ReadErr: "no report written"}}}}}},
		{"relay only", &benchData{Relay: &relayData{Markdown: "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			plots, err := drawPlots(tt.data, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(plots) != 3 {
				t.Fatalf("%d plots, want 3", len(plots))
			}
			for _, p := range plots {
				f, err := os.Open(filepath.Join(dir, p.File))
				if err != nil {
					t.Fatal(err)
				}
				img, err := png.Decode(f)
				f.Close()
				if err != nil {
					t.Fatalf("%s: %v", p.File, err)
				}
				if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
					t.Errorf("%s: %v, want a readable size", p.File, b)
				}
			}
		})
	}
}

// TestReport runs the whole report on a synthetic bench directory: plots
// written, the document's section replaced and the rest kept, links
// relative to the document.
func TestReport(t *testing.T) {
	root := t.TempDir()
	in := filepath.Join(root, ".local", "bench", "20261201T100000Z")
	for _, v := range synthetic().Variants {
		for _, r := range v.Runs {
			if r.Report != nil {
				writeJSON(t, filepath.Join(in, v.Name+"-"+formatRate(r.Rate)+".json"), r.Report)
			}
		}
	}
	doc := filepath.Join(root, "docs", "BENCHMARKS.md")
	if err := os.MkdirAll(filepath.Dir(doc), 0o755); err != nil {
		t.Fatal(err)
	}
	before := "# Benchmarks\n\nintro\n\n" + beginMarker + "\nold\n" + endMarker + "\n\n## Narrative\n"
	if err := os.WriteFile(doc, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := report(in, doc, filepath.Join(root, "docs", "bench"), root, &out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"# Benchmarks\n\nintro\n\n" + beginMarker + "\n", endMarker + "\n\n## Narrative\n",
		"](bench/latency.png)", "](bench/cpu.png)", "`.local/bench/20261201T100000Z`", "### Variant `sampled`"} {
		if !strings.Contains(got, want) {
			t.Errorf("document lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\nold\n") || strings.Contains(got, root) {
		t.Errorf("old section kept, or a machine path in the document:\n%s", got)
	}
	for _, f := range []string{"latency.png", "throughput.png", "cpu.png"} {
		if _, err := os.Stat(filepath.Join(root, "docs", "bench", f)); err != nil {
			t.Error(err)
		}
	}
}

func formatRate(r float64) string { return strconv.FormatFloat(r, 'g', -1, 64) }
