package main

import (
	"encoding/json"
	"fmt"
	"math"
)

// relayReport is the part of tools/relaybench's relay.json the targets
// need: per relay kind ("sagashop", "watermill"), the medians of the
// backlog drains and of the steady-rate runs.
type relayReport struct {
	Settings struct {
		Rate   float64 `json:"rate"`   // the steady runs' offered events/s
		Events int     `json:"events"` // of each drain
		Steady string  `json:"steady"` // how long each steady run wrote
		Repeat int     `json:"repeat"` // runs of each measurement, medians quoted
	} `json:"settings"`
	Drain map[string]struct {
		Median struct {
			EventsPerSec float64 `json:"events_per_sec"`
			Inversions   int     `json:"inversions"`
			Missing      int     `json:"missing"`
		} `json:"median"`
	} `json:"drain"`
	Steady map[string]struct {
		Median struct {
			Rate            float64 `json:"rate"`
			Events          int     `json:"events"`
			P99Ms           float64 `json:"p99_ms"`
			CPUUsPerEvent   float64 `json:"cpu_us_per_event"`
			DBCPUUsPerEvent float64 `json:"db_cpu_us_per_event"`
			Inversions      int     `json:"inversions"`
			Missing         int     `json:"missing"`
		} `json:"median"`
	} `json:"steady"`
}

const (
	relayDrainFactor = 10  // the relay drains a backlog at least this many times Watermill's rate
	relaySteadyRate  = 200 // events/s of the steady comparison
	relayCPUShare    = 0.2 // at most this share of Watermill's CPU per event
	relaySagashop    = "sagashop"
	relayWatermill   = "watermill"
)

// relayTargets evaluates the relay's two targets from relay.json. CPU per
// event is the relay process and its PostgreSQL backends together, since
// a relay that moves work into the database has not saved it.
func relayTargets(d *relayData) []targetRow {
	drainTarget := fmt.Sprintf("relay drains a backlog ≥ %d× as fast as Watermill's forwarder", relayDrainFactor)
	steadyTarget := fmt.Sprintf("at %d ev/s, relay p99 ≤ Watermill's, with ≤ 1/%.0f of its CPU per event", relaySteadyRate, 1/relayCPUShare)
	both := func(result string) []targetRow {
		return []targetRow{{drainTarget, "relay", result}, {steadyTarget, "relay", result}}
	}
	switch {
	case d == nil:
		return both(notMeasured("the relay comparison did not run"))
	case len(d.JSON) == 0:
		return both(notMeasured("no relay.json"))
	}
	var rep relayReport
	if err := json.Unmarshal(d.JSON, &rep); err != nil {
		return both(notMeasured("relay.json unreadable: " + err.Error()))
	}
	return []targetRow{{drainTarget, "relay", relayDrain(&rep)}, {steadyTarget, "relay", relaySteady(&rep)}}
}

func relayDrain(rep *relayReport) string {
	s, okS := rep.Drain[relaySagashop]
	w, okW := rep.Drain[relayWatermill]
	if !okS || !okW || s.Median.EventsPerSec <= 0 || w.Median.EventsPerSec <= 0 {
		return notMeasured("relay.json has no drain of both relays")
	}
	x := s.Median.EventsPerSec / w.Median.EventsPerSec
	// Rounded down, so a factor just short of the target never reads as it.
	measured := fmt.Sprintf("%.2f× (%.0f against %.0f ev/s; median of %s of %s events)", math.Floor(x*100)/100, s.Median.EventsPerSec, w.Median.EventsPerSec,
		count(rep.Settings.Repeat, "drain"), thousands(rep.Settings.Events))
	if bad := relayFaults(s.Median.Missing, s.Median.Inversions); bad != "" {
		return notMet("%s%s", measured, bad)
	}
	if x >= relayDrainFactor {
		return met("%s", measured)
	}
	return notMet("%s", measured)
}

func relaySteady(rep *relayReport) string {
	s, okS := rep.Steady[relaySagashop]
	w, okW := rep.Steady[relayWatermill]
	if !okS || !okW || s.Median.Events == 0 || w.Median.Events == 0 {
		return notMeasured("relay.json has no steady run of both relays")
	}
	rate := s.Median.Rate
	if rate == 0 {
		rate = rep.Settings.Rate
	}
	if rate != relaySteadyRate {
		return notMeasured(fmt.Sprintf("the steady runs offered %g ev/s", rate))
	}
	sCPU := s.Median.CPUUsPerEvent + s.Median.DBCPUUsPerEvent
	wCPU := w.Median.CPUUsPerEvent + w.Median.DBCPUUsPerEvent
	measured := fmt.Sprintf("p99 %s against %s; CPU %.0f against %.0f µs per event, relay and its PostgreSQL backends",
		ms(s.Median.P99Ms), ms(w.Median.P99Ms), sCPU, wCPU)
	if wCPU > 0 {
		measured += fmt.Sprintf(", %.2f×", sCPU/wCPU)
	}
	measured += fmt.Sprintf("; median of %s of %s", count(rep.Settings.Repeat, "run"), or(rep.Settings.Steady, "?"))
	if bad := relayFaults(s.Median.Missing, s.Median.Inversions); bad != "" {
		return notMet("%s%s", measured, bad)
	}
	if wCPU <= 0 {
		return notMeasured("relay.json has no CPU per event for Watermill")
	}
	if s.Median.P99Ms <= w.Median.P99Ms && sCPU <= relayCPUShare*wCPU {
		return met("%s", measured)
	}
	return notMet("%s", measured)
}

// relayFaults names what the relay got wrong: events lost, or out of
// commit order per key (duplicates are allowed: at least once).
func relayFaults(missing, inversions int) string {
	s := ""
	if missing > 0 {
		s += fmt.Sprintf("; %d events missing", missing)
	}
	if inversions > 0 {
		s += fmt.Sprintf("; %d order inversions", inversions)
	}
	return s
}

// count is "1 run", "3 runs"; "? runs" when n is unknown.
func count(n int, noun string) string {
	switch n {
	case 0:
		return "? " + noun + "s"
	case 1:
		return "1 " + noun
	default:
		return fmt.Sprintf("%d %ss", n, noun)
	}
}
