package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		wantErr      []string // parts of the error; nil means no error
		wantDeadline time.Duration
	}{
		{name: "defaults", wantDeadline: 5 * time.Minute},
		{name: "a deadline in seconds", env: map[string]string{"SAGA_DEADLINE": "20s"}, wantDeadline: 20 * time.Second},
		{name: "a deadline in hours and minutes", env: map[string]string{"SAGA_DEADLINE": "1h30m"}, wantDeadline: 90 * time.Minute},
		{name: "not a duration", env: map[string]string{"SAGA_DEADLINE": "5"}, wantErr: []string{"SAGA_DEADLINE"}},
		{name: "words", env: map[string]string{"SAGA_DEADLINE": "five minutes"}, wantErr: []string{"SAGA_DEADLINE"}},
		{name: "zero", env: map[string]string{"SAGA_DEADLINE": "0s"}, wantErr: []string{"SAGA_DEADLINE"}},
		{name: "negative", env: map[string]string{"SAGA_DEADLINE": "-1m"}, wantErr: []string{"SAGA_DEADLINE"}},
		{
			name:    "all problems at once",
			env:     map[string]string{"SAGA_DEADLINE": "soon", "LOG_LEVEL": "loud"},
			wantErr: []string{"SAGA_DEADLINE", "LOG_LEVEL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(func(k string) string { return tt.env[k] })
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.SagaDeadline != tt.wantDeadline {
				t.Errorf("saga deadline %v, want %v", c.SagaDeadline, tt.wantDeadline)
			}
			if c.Platform.HTTPAddr != ":8081" || c.Platform.Service != "order" {
				t.Errorf("platform config %+v", c.Platform)
			}
		})
	}
}

func TestSweepInterval(t *testing.T) {
	for deadline, want := range map[time.Duration]time.Duration{
		500 * time.Millisecond: time.Second,
		5 * time.Second:        time.Second,
		15 * time.Second:       1500 * time.Millisecond,
		20 * time.Second:       2 * time.Second,
		5 * time.Minute:        5 * time.Second,
		24 * time.Hour:         5 * time.Second,
	} {
		if got := sweepInterval(deadline); got != want {
			t.Errorf("sweepInterval(%v) = %v, want %v", deadline, got, want)
		}
	}
}
