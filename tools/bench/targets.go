package main

import (
	"fmt"
	"math"
	"strings"
)

// The targets, evaluated from the data only: a target is "met" when
// a run shows it, "not met" when a run shows it is missed (with what was
// measured), and "not measured" when no run says either way. A run with
// invariant violations meets nothing: its figures are of a system that lost
// or mishandled orders.
const (
	latencyRate   = 100  // orders/s offered
	latencyP50MS  = 15   // send → SHIPPED p50 at latencyRate
	latencyP99MS  = 50   // and p99
	capacityRate  = 1000 // orders/s to terminal
	capacityDurS  = 60   // sustained over a run this long
	capacityP99MS = 1000 // with p99 (both outcomes) below this
	cpuRate       = 500  // orders/s offered
	cpuMaxMS      = 2    // CPU ms per order, the system's processes summed
)

type targetRow struct {
	Target string
	Scope  string // the variant, or "relay"
	Result string
}

func met(format string, args ...any) string {
	return "met (measured " + fmt.Sprintf(format, args...) + ")"
}
func notMet(format string, args ...any) string {
	return "not met (measured " + fmt.Sprintf(format, args...) + ")"
}
func notMeasured(why string) string { return "not measured (" + why + ")" }

func evaluateTargets(d *benchData) []targetRow {
	var rows []targetRow
	for _, v := range d.Variants {
		rows = append(rows,
			targetRow{fmt.Sprintf("at %d/s, send → SHIPPED p50 ≤ %d ms and p99 ≤ %d ms", latencyRate, latencyP50MS, latencyP99MS), v.Name, latencyTarget(v.Runs)},
			targetRow{fmt.Sprintf("≥ %s orders/s to terminal sustained over a %d s run, p99 < %d s", thousands(capacityRate), capacityDurS, capacityP99MS/1000), v.Name, capacityTarget(v.Runs)},
			targetRow{fmt.Sprintf("≤ %d CPU-ms per order (the system's processes summed) at %d/s", cpuMaxMS, cpuRate), v.Name, cpuTarget(v.Runs)},
		)
	}
	return append(rows, relayTargets(d.Relay)...)
}

func runAt(runs []*benchRun, rate float64) *benchRun {
	for _, r := range runs {
		if r.Rate == rate {
			return r
		}
	}
	return nil
}

func violations(r *loadReport) string {
	if len(r.Problems) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d invariant violations", len(r.Problems))
}

func latencyTarget(runs []*benchRun) string {
	r := runAt(runs, latencyRate)
	switch {
	case r == nil:
		return notMeasured(fmt.Sprintf("no run at %d/s", latencyRate))
	case r.Report == nil:
		return notMeasured(fmt.Sprintf("the run at %d/s has no report: %s", latencyRate, r.ReadErr))
	}
	s := r.Report.Outcomes["shipped"]
	if s.N == 0 {
		return notMeasured(fmt.Sprintf("no order shipped in the run at %d/s", latencyRate))
	}
	measured := fmt.Sprintf("p50 %s, p99 %s", ms(s.P50), ms(s.P99))
	if s.P50 <= latencyP50MS && s.P99 <= latencyP99MS && len(r.Report.Problems) == 0 {
		return met("%s", measured)
	}
	return notMet("%s%s", measured, violations(r.Report))
}

// capacityTarget: a run of at least capacityDurS offering at least
// capacityRate whose orders all ended with p99 below capacityP99MS has the
// system sustaining terminal/duration orders a second. A run as long that
// is past the knee at a rate below capacityRate shows the target missed.
func capacityTarget(runs []*benchRun) string {
	var best *loadReport
	for _, r := range runs {
		rep := r.Report
		if rep == nil || rep.OfferedRate < capacityRate || rep.DurationSeconds < capacityDurS {
			continue
		}
		if capacityOK(rep) {
			return met("%.0f orders/s over %gs at %g/s offered, p99 %s", float64(rep.Terminal)/rep.DurationSeconds,
				rep.DurationSeconds, rep.OfferedRate, ms(worstP99(rep)))
		}
		if best == nil || throughput(rep) > throughput(best) {
			best = rep
		}
	}
	if best != nil {
		return notMet("%.0f orders/s to terminal at %g/s offered for %gs, p99 %s%s", throughput(best), best.OfferedRate,
			best.DurationSeconds, ms(worstP99(best)), violations(best))
	}
	for _, r := range runs {
		// Only a run as long as the target's says the system cannot
		// sustain it: a short one may have caught a busy moment.
		if r.Report != nil && r.Rate < capacityRate && r.Report.DurationSeconds >= capacityDurS && pastKnee(r.Report) {
			return notMet("past the knee at %g/s offered: %.0f orders/s to terminal in a %gs run",
				r.Rate, throughput(r.Report), r.Report.DurationSeconds)
		}
	}
	return notMeasured(fmt.Sprintf("no run of ≥ %d s at ≥ %s/s", capacityDurS, thousands(capacityRate)))
}

func capacityOK(rep *loadReport) bool {
	return len(rep.Problems) == 0 && rep.Terminal == rep.Placed &&
		float64(rep.Terminal)/rep.DurationSeconds >= capacityRate && worstP99(rep) < capacityP99MS
}

// worstP99 is the larger p99 of the two outcomes.
func worstP99(rep *loadReport) float64 {
	var p float64
	for _, l := range rep.Outcomes {
		if l.N > 0 {
			p = math.Max(p, l.P99)
		}
	}
	return p
}

func cpuTarget(runs []*benchRun) string {
	r := runAt(runs, cpuRate)
	switch {
	case r == nil:
		// A run past the knee below cpuRate shows the system cannot carry
		// cpuRate at all, which no CPU figure at cpuRate could meet.
		for _, k := range runs {
			if k.Report != nil && k.Rate < cpuRate && pastKnee(k.Report) && len(k.Report.CPUByProcessMS) > 0 {
				return notMet("no run at %d/s: past the knee at %g/s offered (%.0f orders/s to terminal), %.2f ms per order there",
					cpuRate, k.Rate, throughput(k.Report), k.Report.cpuSum())
			}
		}
		return notMeasured(fmt.Sprintf("no run at %d/s", cpuRate))
	case r.Report == nil:
		return notMeasured(fmt.Sprintf("the run at %d/s has no report: %s", cpuRate, r.ReadErr))
	case len(r.Report.CPUByProcessMS) == 0:
		return notMeasured(fmt.Sprintf("the run at %d/s has no CPU by process", cpuRate))
	case len(r.Report.cpuMissing()) > 0:
		return notMeasured(fmt.Sprintf("the run at %d/s counted no CPU for %s", cpuRate, strings.Join(r.Report.cpuMissing(), ", ")))
	}
	sum := r.Report.cpuSum()
	if sum <= cpuMaxMS && len(r.Report.Problems) == 0 {
		return met("%.2f ms", sum)
	}
	return notMet("%.2f ms%s", sum, violations(r.Report))
}

// ms formats milliseconds: "12.3 ms", "4.56 s".
func ms(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	default:
		return fmt.Sprintf("%.1f ms", v)
	}
}

// thousands writes n with a comma every three digits, as the issue does.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
