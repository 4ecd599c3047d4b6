package main

import "testing"

func TestPastKnee(t *testing.T) {
	tests := []struct {
		name string
		rep  *loadReport
		want bool
	}{
		{"kept up", rep(100, 99.5, 10, 20), false},
		{"exactly 90 %", rep(100, 90, 10, 20), false},
		{"just below 90 %", rep(100, 89.9, 10, 20), true},
		{"overloaded", rep(1000, 400, 5000, 9000), true},
		{"no report", nil, true},
		{"no offered rate", &loadReport{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pastKnee(tt.rep); got != tt.want {
				t.Errorf("pastKnee = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFindKnee(t *testing.T) {
	noReport := &benchRun{Rate: 200, Exit: 1, ReadErr: "no report written"}
	tests := []struct {
		name string
		runs []*benchRun
		want knee
	}{
		{"none", nil, knee{}},
		{"never reached", runs(rep(50, 50, 5, 9), rep(100, 99, 5, 9)), knee{LastKept: 100}},
		{"between", runs(rep(50, 50, 5, 9), rep(100, 99, 5, 9), rep(200, 120, 5e3, 9e3)), knee{LastKept: 100, FirstPast: 200}},
		{"at the first rate", runs(rep(50, 20, 5e3, 9e3)), knee{FirstPast: 50}},
		{"a run without a report stops it", append(runs(rep(100, 99, 5, 9)), noReport), knee{LastKept: 100, FirstPast: 200, NoReport: true}},
		{"only the first past counts", runs(rep(50, 50, 5, 9), rep(100, 50, 5, 9), rep(200, 199, 5, 9)), knee{LastKept: 50, FirstPast: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := findKnee(tt.runs)
			if got != tt.want {
				t.Errorf("findKnee = %+v, want %+v", got, tt.want)
			}
			if got.String() == "" {
				t.Error("empty description")
			}
		})
	}
}
