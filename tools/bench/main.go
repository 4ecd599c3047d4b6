// Command bench turns what make bench measured into the benchmark report:
// it reads the JSON reports of sagashopctl load (one per tracing variant and
// offered rate) and the relay comparison's relay.json and relay.md, draws
// the plots into docs/bench/ with gonum/plot and rewrites the generated part
// of docs/BENCHMARKS.md, between the lines
//
//	<!-- make bench: begin -->
//	<!-- make bench: end -->
//
// leaving the rest of the file as it is. tools/bench/bench.sh, which make
// bench runs, also uses it for two small jobs during the runs:
//
//	bench env -root DIR          the machine and the versions, as JSON on stdout
//	bench knee -json FILE        "past" when the run of FILE is past the knee
//	                             (orders/s to terminal below 90 % of offered),
//	                             else "below"
//	bench report -in DIR -doc FILE -png DIR [-root DIR]
//	                             the plots and the report
//
// The bench directory (DIR of -in) holds <variant>-<rate>.json per run, and
// what bench.sh wrote about the runs: manifest.tsv (see manifest.go),
// env.json (bench env) and relay/ (make bench-relay's -out). Everything the
// report says is computed from those files, so a report can be drawn again
// from an old directory. It claims a target only when the data shows it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const usage = "usage: bench env -root DIR | knee -json FILE | report -in DIR -doc FILE -png DIR [-root DIR]"

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "env":
		fs := flag.NewFlagSet("env", flag.ContinueOnError)
		root := fs.String("root", "../..", "the repository's root (for git and the version files)")
		pgPort := fs.String("pg-port", "5432", "the local PostgreSQL's port, asked for server_version when postgres is not on PATH")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		env := snapshotEnv(*root, *pgPort)
		b, err := json.MarshalIndent(env, "", "  ")
		if err != nil {
			return fmt.Errorf("encode environment: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	case "knee":
		fs := flag.NewFlagSet("knee", flag.ContinueOnError)
		file := fs.String("json", "", "a report of sagashopctl load -json")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		rep, err := readLoadReport(*file)
		if err != nil {
			return err
		}
		verdict := "below"
		if pastKnee(rep) {
			verdict = "past"
		}
		_, err = fmt.Fprintf(stdout, "%s %.1f of %g orders/s to terminal\n", verdict, throughput(rep), rep.OfferedRate)
		return err
	case "report":
		fs := flag.NewFlagSet("report", flag.ContinueOnError)
		in := fs.String("in", "", "the bench directory (.local/bench/<timestamp>)")
		doc := fs.String("doc", "../../docs/BENCHMARKS.md", "the document whose generated section is rewritten")
		png := fs.String("png", "../../docs/bench", "where the plots go")
		root := fs.String("root", "../..", "the repository's root: paths in the report are shown relative to it")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *in == "" {
			return errors.New("report: -in is required")
		}
		return report(*in, *doc, *png, *root, stdout)
	default:
		return errors.New(usage)
	}
}

// report reads the bench directory in, draws the plots into pngDir and
// rewrites the generated section of doc.
func report(in, doc, pngDir, root string, stdout io.Writer) error {
	data, err := readBench(in)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(pngDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", pngDir, err)
	}
	plots, err := drawPlots(data, pngDir)
	if err != nil {
		return err
	}
	// The document links its images relative to itself.
	docDir := filepath.Dir(doc)
	for i := range plots {
		rel, err := filepath.Rel(docDir, filepath.Join(pngDir, plots[i].File))
		if err != nil {
			return fmt.Errorf("link %s from %s: %w", plots[i].File, doc, err)
		}
		plots[i].Link = filepath.ToSlash(rel)
	}
	old, err := os.ReadFile(doc)
	if err != nil {
		return fmt.Errorf("read %s: %w", doc, err)
	}
	rootAbs, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("root %s: %w", root, err)
	}
	section := renderSection(data, plots, relTo(root, in), rootAbs)
	updated, err := replaceSection(string(old), section)
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	if err := os.WriteFile(doc, []byte(updated), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", doc, err)
	}
	fmt.Fprintf(stdout, "bench: %d runs in %d variants; wrote %d plots to %s and the report to %s\n",
		data.runCount(), len(data.Variants), len(plots), pngDir, doc)
	return nil
}

// relTo is path relative to root when it lies under it, so the committed
// report names no machine's folders; else path as given.
func relTo(root, path string) string {
	ra, err1 := filepath.Abs(root)
	pa, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return path
	}
	rel, err := filepath.Rel(ra, pa)
	if err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) > 2 && rel[:3] == ".."+string(filepath.Separator) {
		return path
	}
	return filepath.ToSlash(rel)
}
