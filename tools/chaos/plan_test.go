package main

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testConfig() config {
	return config{Orders: 5000, Rate: 50, Kills: 40, Pauses: 3, Kafka: 3, Postgres: 3, Poisons: 5, Net: 6, Pause: 13 * time.Second,
		Drain: time.Minute, Seed: 42, Customers: 10, SKUs: 5, PGPort: 35432, KafkaPort: 39092, KafkaControllerPort: 39093}
}

func TestPlanIsTheSeeds(t *testing.T) {
	cfg := testConfig()
	a, b := plan(cfg), plan(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two plans of one seed differ")
	}
	cfg.Seed = 43
	if reflect.DeepEqual(a, plan(cfg)) {
		t.Fatal("plans of seeds 42 and 43 are the same")
	}
}

func TestPlanSizes(t *testing.T) {
	cfg := testConfig()
	p := plan(cfg)
	got := map[string]int{}
	var infra []fault
	for i, f := range p {
		if i > 0 && f.At < p[i-1].At {
			t.Fatalf("fault %d at %s before fault %d at %s", i, f.At, i-1, p[i-1].At)
		}
		if f.At < 0 || f.At > cfg.window() {
			t.Errorf("fault %d at %s, outside the %s window", i, f.At, cfg.window())
		}
		switch f.Kind {
		case faultKill:
			got[f.Kind] += len(f.Services)
			seen := map[string]bool{}
			for _, s := range f.Services {
				if seen[s] {
					t.Errorf("kill %d names %s twice", i, s)
				}
				seen[s] = true
			}
		case faultNetLatency, faultNetStall, faultNetReset:
			got["net"]++
		case faultKafka, faultPostgres:
			got[f.Kind]++
			infra = append(infra, f)
		default:
			got[f.Kind]++
		}
	}
	want := map[string]int{faultKill: 40, faultPause: 3, faultKafka: 3, faultPostgres: 3, faultPoison: 5, "net": 6}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("faults by kind %v, want %v", got, want)
	}
	// Each broker or database fault starts in a slot of its own, so the
	// gap to the next is at least two thirds of a slot.
	slot := time.Duration(0.85 / 6 * float64(cfg.window()))
	for i := 1; i < len(infra); i++ {
		if gap := infra[i].At - infra[i-1].At; gap < slot*2/3 {
			t.Errorf("infrastructure faults %d and %d only %s apart", i-1, i, gap)
		}
	}
}

func TestPlanNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Kills, cfg.Pauses, cfg.Kafka, cfg.Postgres, cfg.Poisons, cfg.Net = 0, 0, 0, 0, 0, 0
	if p := plan(cfg); len(p) != 0 {
		t.Fatalf("plan without faults: %v", p)
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error; "" none
	}{
		{"defaults", nil, ""},
		{"full size", []string{"-orders", "5000", "-rate", "50", "-kills", "40", "-kafka-restarts", "3", "-postgres-restarts", "3"}, ""},
		{"no orders", []string{"-orders", "0"}, "-orders"},
		{"negative rate", []string{"-rate", "-1"}, "-rate"},
		{"negative kills", []string{"-kills", "-1"}, "must not be negative"},
		{"zero pause", []string{"-pause", "0s"}, "-pause"},
		{"bad port", []string{"-pg-port", "70000"}, "out of range"},
		{"stray argument", []string{"now"}, "unexpected arguments"},
		{"not the repository", []string{"-root", "/"}, "not Sagashop's repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, io.Discard)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			case tc.want == "" && cfg.Seed == 0:
				t.Fatal("no seed drawn")
			}
		})
	}
}

func TestReport(t *testing.T) {
	cfg := testConfig()
	fx := &fixtures{paying: []string{"c"}, unpaid: []string{"u"}, skus: []string{"s"}, oos: "o", scarce: "x"}
	cfg.Orders = 3
	h := newHistory(cfg, fx)
	start := time.Now()
	h.ops[0].Attempts = []try{{At: 0, Status: 201}}
	h.ops[0].Ack, h.ops[0].Final = true, "SHIPPED"
	h.ops[1].Attempts = []try{{At: 0.02}, {At: 0.5, Status: 201}}
	h.ops[1].Ack, h.ops[1].Final, h.ops[1].Reason = true, "CANCELLED", "payment_failed"
	h.ops[2].Attempts = []try{{At: 0.04}, {At: 9, Status: 201}}
	h.ops[2].Ack, h.ops[2].AckAfterHeal, h.ops[2].Final = true, true, "SHIPPED"
	faults := []faultRecord{
		{Kind: faultKill, Services: []string{"order", "email"}, InFlight: []inFlight{{Service: "order", Outbox: 2}, {Service: "email"}}},
		{Kind: faultKafka},
		{Kind: faultPause, Skipped: true},
		{Kind: faultPostgres, Error: "pg_ctl failed"},
	}
	res := results{TerminalAfterHeal: 1.5, Invariants: []invariant{{Name: "a", OK: true}, {Name: "b", Count: 1, Violations: []string{"order x"}}}}
	r := newReport(cfg, h, faults, start, start.Add(time.Second), start.Add(2*time.Second), res, nil)
	if r.Passed {
		t.Error("passed with a failed invariant and a fault error")
	}
	if r.Acked != 3 || r.AckedLate != 1 || r.Retried != 2 || r.KillsBusy != 1 {
		t.Errorf("acked %d late %d retried %d busy kills %d, want 3 1 2 1", r.Acked, r.AckedLate, r.Retried, r.KillsBusy)
	}
	if want := map[string]int{faultKill: 2, faultKafka: 1}; !reflect.DeepEqual(r.Faults, want) {
		t.Errorf("faults %v, want %v", r.Faults, want)
	}
	if want := map[string]int{"SHIPPED": 2, "CANCELLED payment_failed": 1}; !reflect.DeepEqual(r.Outcomes, want) {
		t.Errorf("outcomes %v, want %v", r.Outcomes, want)
	}
	var md bytes.Buffer
	r.markdown(&md)
	for _, want := range []string{"seed 42: FAILED", "kafka 1, kill 2", "1 of the service kills hit work in flight", "**FAILED** (1): order x", "fault error: postgres", "1 kills or pauses struck fewer"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}
