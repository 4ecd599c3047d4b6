package main

import (
	"maps"
	"math"
	"strings"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	fx := &fixtures{skus: []string{"a", "b"}, oos: "none", paying: []string{"p1", "p2"}, unpaid: []string{"u1"}}
	cfg := loadConfig{Rate: 200, Duration: 10 * time.Second, Unpaid: 0.1, OutStock: 0.1, Seed: 7}
	orders := schedule(cfg, fx)
	if len(orders) != 2000 {
		t.Fatalf("%d orders, want rate × duration = 2000", len(orders))
	}
	count := map[string]int{}
	for i, o := range orders {
		count[o.Scenario]++
		if want := time.Duration(i) * 5 * time.Millisecond; o.Intended.Sub(time.Time{}) != want {
			t.Fatalf("order %d intended at %s, want %s: arrivals are evenly spaced", i, o.Intended.Sub(time.Time{}), want)
		}
		switch {
		case o.Scenario == scenarioUnpaid && !strings.HasPrefix(o.Customer, "u"),
			o.Scenario == scenarioOutStock && o.SKU != "none",
			o.Scenario == scenarioShip && (o.SKU == "none" || !strings.HasPrefix(o.Customer, "p")),
			o.Quantity < 1 || o.Quantity > 3:
			t.Fatalf("order %d: %+v does not fit its scenario", i, o)
		}
	}
	for sc, want := range map[string]float64{scenarioShip: 0.8, scenarioUnpaid: 0.1, scenarioOutStock: 0.1} {
		if got := float64(count[sc]) / 2000; math.Abs(got-want) > 0.03 {
			t.Errorf("%s: share %.3f, want about %.2f", sc, got, want)
		}
	}
	again := schedule(cfg, fx)
	for i := range orders {
		if *orders[i] != *again[i] {
			t.Fatalf("the same seed drew another order %d: %+v, %+v", i, orders[i], again[i])
		}
	}
}

func TestNewLatency(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := newLatency(ds)
	if l.N != 100 || l.P50 != 50 || l.P90 != 90 || l.P99 != 99 || l.Max != 100 {
		t.Errorf("percentiles of 1..100 ms: %+v", l)
	}
	if (newLatency(nil) != latency{}) {
		t.Error("no samples: want zero")
	}
}

func TestParseLoadFlags(t *testing.T) {
	for name, tt := range map[string]struct {
		args []string
		ok   bool
	}{
		"defaults":        {nil, true},
		"mix":             {[]string{"-unpaid", "0.5", "-out-of-stock", "0.5"}, true},
		"mix over 1":      {[]string{"-unpaid", "0.6", "-out-of-stock", "0.5"}, false},
		"negative share":  {[]string{"-unpaid", "-0.1"}, false},
		"no orders":       {[]string{"-rate", "0.5", "-duration", "1s"}, false},
		"zero rate":       {[]string{"-rate", "0"}, false},
		"no customers":    {[]string{"-customers", "0"}, false},
		"unknown flag":    {[]string{"-rat", "5"}, false},
		"procs and quiet": {[]string{"-procs", "order, postgres", "-quiet"}, true},
	} {
		cfg, err := parseLoadFlags(tt.args)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", name, err)
		}
		if err == nil && cfg.Seed == 0 {
			t.Errorf("%s: no seed drawn", name)
		}
	}
}

// CPU by name is summed per process: one that ended in between is left out
// instead of taking its total away from the others of its name, and one that
// started in between counts whole.
func TestCPUMinusPerProcess(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	earlier := cpuSample{Machine: ms(1000), ByPID: map[int]procCPU{
		1: {"postgres", ms(500)}, // ends in between
		2: {"postgres", ms(100)},
		3: {"order", ms(40)},
		4: {"email", ms(70)}, // its pid is reused by another program
	}}
	later := cpuSample{Machine: ms(1600), ByPID: map[int]procCPU{
		2: {"postgres", ms(130)},
		3: {"order", ms(90)},
		4: {"order", ms(5)},
		5: {"postgres", ms(20)}, // started in between
	}}
	got := later.minus(earlier)
	want := map[string]time.Duration{"postgres": ms(50), "order": ms(55)}
	if got.Machine != ms(600) || !maps.Equal(got.ByName, want) {
		t.Errorf("got %v %v, want 600ms %v", got.Machine, got.ByName, want)
	}
}

func TestSampleCPU(t *testing.T) {
	before := sampleCPU([]string{"sagashopctl.test", "no-such-process"})
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn some CPU
	}
	used := sampleCPU([]string{"sagashopctl.test", "no-such-process"}).minus(before)
	if used.Machine <= 0 {
		t.Errorf("machine CPU %s over a busy loop", used.Machine)
	}
	if used.ByName["no-such-process"] != 0 {
		t.Errorf("CPU of a process that does not exist: %s", used.ByName["no-such-process"])
	}
}
