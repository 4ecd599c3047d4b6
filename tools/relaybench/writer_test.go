package main

import (
	"strings"
	"testing"
)

func TestWriterSettingsReadOffTheWriter(t *testing.T) {
	got := writerSettings()
	for _, want := range []string{"required acks all", "*kafka.Hash balancer", "batch size"} {
		if !strings.Contains(got, want) {
			t.Errorf("writerSettings() = %q, want it to contain %q", got, want)
		}
	}
}
