package main

import (
	"testing"
	"time"
)

func TestSinglePlan(t *testing.T) {
	cfg := testConfig()
	cfg.Single, cfg.SingleCount, cfg.SingleGap, cfg.Rate = faultKill, 6, 30*time.Second, 30
	p := singlePlan(cfg)
	if len(p) != 6 {
		t.Fatalf("%d faults, want 6", len(p))
	}
	for i, f := range p {
		if f.Kind != faultKill || f.At != time.Duration(i+1)*30*time.Second || len(f.Services) != 1 || f.Hold != time.Second {
			t.Errorf("fault %d: %+v", i, f)
		}
		if want := services[i%len(services)]; f.Services[0] != want {
			t.Errorf("fault %d strikes %s, want %s (the services in turn)", i, f.Services[0], want)
		}
	}
	if got := singleOrders(cfg); got != 30*7*30 {
		t.Errorf("%d orders, want %d (the load outlasts the last fault by a gap)", got, 30*7*30)
	}
}

func TestParseFlagsSingle(t *testing.T) {
	cfg, err := parseFlags([]string{"-root", "../..", "-single", "kafka", "-rate", "30", "-single-count", "2", "-single-gap", "20s"}, discard{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Orders != 30*3*20 || cfg.Kills+cfg.Pauses+cfg.Kafka+cfg.Postgres+cfg.Poisons+cfg.Net != 0 {
		t.Errorf("-single kafka: %d orders, %d kills, %d poisons, %d net faults; want 1800 orders and nothing else planned",
			cfg.Orders, cfg.Kills, cfg.Poisons, cfg.Net)
	}
	for _, args := range [][]string{{"-single", "net"}, {"-single", "kill", "-single-count", "0"}, {"-single", "kill", "-single-gap", "5s"}} {
		if _, err := parseFlags(append([]string{"-root", "../.."}, args...), discard{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func TestRecoveredAfter(t *testing.T) {
	s := func(sent, took float64) latencySample { return latencySample{sent: sent, took: took} }
	tests := []struct {
		name    string
		samples []latencySample
		want    float64
	}{
		{"never slow", []latencySample{s(10, 1), s(11, 1), s(12, 1)}, 10},
		{"slow until 14", []latencySample{s(10, 9), s(12, 7), s(14, 4), s(15, 1), s(16, 1), s(20, 1)}, 14},
		{"a slow one within 5 s of the last moves it", []latencySample{s(10, 9), s(11, 1), s(14, 5), s(15, 1)}, 14},
		{"a slow one more than 5 s after the last does not count", []latencySample{s(10, 9), s(11, 1), s(13, 1), s(15.5, 1), s(16, 9)}, 10},
		{"before from is ignored", []latencySample{s(5, 30), s(10, 1)}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := recoveredAfter(tt.samples, 10, 3); got != tt.want {
				t.Errorf("recoveredAfter = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, tt := range []struct{ p, want float64 }{{0.5, 3}, {1, 5}, {0.99, 5}, {0.2, 1}} {
		if got := percentile(xs, tt.p); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of none = %v, want 0", got)
	}
}
