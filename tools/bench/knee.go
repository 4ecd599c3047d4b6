package main

import "fmt"

// kneeShare is where a run is past the knee: fewer orders a second reach a
// terminal state than this share of the offered rate.
const kneeShare = 0.9

// throughput is a run's orders a second to a terminal state: every order
// that ended, over the time from the first send to the last end
// (sagashopctl's sustained_per_sec). Unlike the count over the offered
// window alone, a backlog that drains after the window does not raise it.
func throughput(r *loadReport) float64 { return r.SustainedPerSec }

// pastKnee says whether a run is past the knee; a run without a report
// (the load did not get to write one) counts as past it, since there is
// nothing to show the system kept up.
func pastKnee(r *loadReport) bool {
	return r == nil || r.OfferedRate <= 0 || throughput(r) < kneeShare*r.OfferedRate
}

// knee is where a variant's runs stopped keeping up: LastKept is the
// highest offered rate below the first run past the knee (0: none),
// FirstPast that run's rate (0: every run kept up).
type knee struct {
	LastKept, FirstPast float64
	NoReport            bool // the run at FirstPast left no report
}

// findKnee scans runs in ascending rate.
func findKnee(runs []*benchRun) knee {
	var k knee
	for _, r := range runs {
		if pastKnee(r.Report) {
			k.FirstPast, k.NoReport = r.Rate, r.Report == nil
			return k
		}
		k.LastKept = r.Rate
	}
	return k
}

func (k knee) String() string {
	why := fmt.Sprintf("orders/s to terminal < %.0f %% of offered", 100*kneeShare)
	if k.NoReport {
		why = "that run left no report"
	}
	switch {
	case k.FirstPast == 0 && k.LastKept == 0:
		return "no runs"
	case k.FirstPast == 0:
		return fmt.Sprintf("not reached: every run up to %g/s kept up (orders/s to terminal ≥ %.0f %% of offered)", k.LastKept, 100*kneeShare)
	case k.LastKept == 0:
		return fmt.Sprintf("at or below %g/s, the lowest rate run (%s)", k.FirstPast, why)
	default:
		return fmt.Sprintf("between %g/s (kept up) and %g/s (%s)", k.LastKept, k.FirstPast, why)
	}
}
