package main

import (
	"cmp"
	"fmt"
	"image/color"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotFile is one drawn plot: its file name in the plot directory, its
// title, and (set by the caller) its link from the document.
type plotFile struct {
	File, Title, Link string
}

const (
	plotWidth  = 8 * vg.Inch
	plotHeight = 5 * vg.Inch
)

// drawPlots draws the three plots of d into dir: latency against offered
// rate, orders/s to terminal against offered rate, CPU per order by
// process. Runs without a report are left out of them.
func drawPlots(d *benchData, dir string) ([]plotFile, error) {
	plots := []struct {
		file, title string
		draw        func(*benchData, string) (*plot.Plot, error)
	}{
		{"latency.png", "send → SHIPPED p50 and p99 against offered rate", latencyPlot},
		{"throughput.png", "orders/s to terminal against offered rate", throughputPlot},
		{"cpu.png", "CPU ms per order by process", cpuPlot},
	}
	var out []plotFile
	for _, pl := range plots {
		p, err := pl.draw(d, pl.title)
		if err != nil {
			return nil, fmt.Errorf("plot %s: %w", pl.file, err)
		}
		w, h := plotWidth, plotHeight
		if pl.file == "cpu.png" {
			w = max(w, vg.Length(len(cpuCategories(d)))*0.55*vg.Inch+2*vg.Inch)
		}
		if err := p.Save(w, h, filepath.Join(dir, pl.file)); err != nil {
			return nil, fmt.Errorf("save %s: %w", pl.file, err)
		}
		out = append(out, plotFile{File: pl.file, Title: pl.title})
	}
	return out, nil
}

// reported is the runs of v that have a report.
func reported(v *variant) []*loadReport {
	var out []*loadReport
	for _, r := range v.Runs {
		if r.Report != nil {
			out = append(out, r.Report)
		}
	}
	return out
}

func latencyPlot(d *benchData, title string) (*plot.Plot, error) {
	p := newPlot(title, "offered orders/s", "send → SHIPPED (ms)")
	var xs, ys []float64
	for i, v := range d.Variants {
		for j, q := range []struct {
			name string
			at   func(latency) float64
		}{{"p50", func(l latency) float64 { return l.P50 }}, {"p99", func(l latency) float64 { return l.P99 }}} {
			var pts plotter.XYs
			for _, rep := range reported(v) {
				l := rep.Outcomes["shipped"]
				if l.N == 0 || q.at(l) <= 0 {
					continue
				}
				pts = append(pts, plotter.XY{X: rep.OfferedRate, Y: q.at(l)})
				xs, ys = append(xs, rep.OfferedRate), append(ys, q.at(l))
			}
			if len(pts) == 0 {
				continue
			}
			style := draw.LineStyle{Color: plotutil.Color(i), Width: vg.Points(1.5)}
			if j == 1 {
				style.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			}
			if err := addLine(p, v.Name+" "+q.name, pts, style, plotutil.Shape(j)); err != nil {
				return nil, err
			}
		}
	}
	logAxes(p, xs, ys)
	return p, nil
}

func throughputPlot(d *benchData, title string) (*plot.Plot, error) {
	p := newPlot(title, "offered orders/s", "orders/s to terminal")
	var xs, ys []float64
	for i, v := range d.Variants {
		var pts plotter.XYs
		for _, rep := range reported(v) {
			if throughput(rep) <= 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: rep.OfferedRate, Y: throughput(rep)})
			xs, ys = append(xs, rep.OfferedRate), append(ys, throughput(rep))
		}
		if len(pts) == 0 {
			continue
		}
		if err := addLine(p, v.Name, pts, draw.LineStyle{Color: plotutil.Color(i), Width: vg.Points(1.5)}, plotutil.Shape(i)); err != nil {
			return nil, err
		}
	}
	if len(xs) > 0 {
		// y = x over the whole range, so a point below it is orders the
		// system did not keep up with.
		lo, hi := slices.Min(append(slices.Clone(xs), ys...)), slices.Max(append(slices.Clone(xs), ys...))
		ideal, err := plotter.NewLine(plotter.XYs{{X: lo / 2, Y: lo / 2}, {X: hi * 2, Y: hi * 2}})
		if err != nil {
			return nil, err
		}
		ideal.LineStyle = draw.LineStyle{Color: color.Gray{Y: 140}, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(2), vg.Points(2)}}
		p.Add(ideal)
		p.Legend.Add("y = x (kept up)", ideal)
	}
	logAxes(p, xs, ys)
	return p, nil
}

// palette has a color for each of the eight processes sagashopctl
// reports and two more (plotutil's default cycles after seven).
var palette = []color.Color{
	color.RGBA{0x4e, 0x79, 0xa7, 0xff}, color.RGBA{0xf2, 0x8e, 0x2b, 0xff}, color.RGBA{0xe1, 0x57, 0x59, 0xff},
	color.RGBA{0x76, 0xb7, 0xb2, 0xff}, color.RGBA{0x59, 0xa1, 0x4f, 0xff}, color.RGBA{0xed, 0xc9, 0x48, 0xff},
	color.RGBA{0xb0, 0x7a, 0xa1, 0xff}, color.RGBA{0xff, 0x9d, 0xa7, 0xff}, color.RGBA{0x9c, 0x75, 0x5f, 0xff},
	color.RGBA{0xba, 0xb0, 0xac, 0xff},
}

// cpuCategory is one bar of the CPU plot: a variant at a rate.
type cpuCategory struct {
	label string
	rep   *loadReport
}

func cpuCategories(d *benchData) []cpuCategory {
	var out []cpuCategory
	for _, v := range d.Variants {
		for _, rep := range reported(v) {
			if len(rep.CPUByProcessMS) == 0 {
				continue
			}
			out = append(out, cpuCategory{label: v.Name + "\n" + strconv.FormatFloat(rep.OfferedRate, 'g', -1, 64) + "/s", rep: rep})
		}
	}
	return out
}

// cpuPlot stacks each process's CPU per order, one bar per variant and
// rate, so a bar's height is the system's processes summed.
func cpuPlot(d *benchData, title string) (*plot.Plot, error) {
	p := newPlot(title, "", "CPU ms per order")
	cats := cpuCategories(d)
	if len(cats) == 0 {
		return p, nil
	}
	// The processes in the order of their total share, largest at the
	// bottom of each bar.
	total := map[string]float64{}
	for _, c := range cats {
		for n, v := range c.rep.CPUByProcessMS {
			total[n] += v
		}
	}
	procs := slices.Collect(maps.Keys(total))
	slices.SortFunc(procs, func(a, b string) int { return cmp.Or(cmp.Compare(total[b], total[a]), cmp.Compare(a, b)) })
	var below *plotter.BarChart
	for i, n := range procs {
		vals := make(plotter.Values, len(cats))
		for j, c := range cats {
			vals[j] = c.rep.CPUByProcessMS[n]
		}
		bars, err := plotter.NewBarChart(vals, vg.Points(22))
		if err != nil {
			return nil, err
		}
		bars.Color = palette[i%len(palette)]
		bars.LineStyle.Width = vg.Length(0)
		if below != nil {
			bars.StackOn(below)
		}
		p.Add(bars)
		p.Legend.Add(displayName(n), bars)
		below = bars
	}
	labels := make([]string, len(cats))
	for i, c := range cats {
		labels[i] = c.label
	}
	p.NominalX(labels...)
	// Room at the sides for the outer bars and above them for the legend.
	p.X.Min, p.X.Max = -0.7, float64(len(cats))-0.3
	var top float64
	for i := range cats {
		top = math.Max(top, below.BarHeight(i))
	}
	p.Y.Min, p.Y.Max = 0, math.Max(top, 0.01)*1.35
	p.Legend.Left = false
	return p, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

func addLine(p *plot.Plot, name string, pts plotter.XYs, style draw.LineStyle, shape draw.GlyphDrawer) error {
	line, points, err := plotter.NewLinePoints(pts)
	if err != nil {
		return fmt.Errorf("line %s: %w", name, err)
	}
	line.LineStyle = style
	points.Shape = shape
	points.Color = style.Color
	p.Add(line, points)
	p.Legend.Add(name, line, points)
	return nil
}

// logAxes makes both axes logarithmic over the data, padded, with the
// offered rates as the x ticks. Without data (nothing positive to take a
// logarithm of) the axes stay linear.
func logAxes(p *plot.Plot, xs, ys []float64) {
	if len(xs) == 0 || len(ys) == 0 {
		return
	}
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Min, p.X.Max = slices.Min(xs)/1.3, slices.Max(xs)*1.3
	p.Y.Min, p.Y.Max = slices.Min(ys)/1.5, slices.Max(ys)*1.5
	var ticks plot.ConstantTicks
	for _, x := range dedupe(xs) {
		ticks = append(ticks, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'g', -1, 64)})
	}
	p.X.Tick.Marker = ticks
	p.Y.Tick.Marker = ticks125{}
}

func dedupe(xs []float64) []float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return slices.Compact(s)
}

// ticks125 labels a log axis at 1, 2 and 5 times the powers of ten in its
// range (plot.LogTicks labels only the powers, too few for a range of one
// or two decades).
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	var out []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
		}
	}
	return out
}
