package main

import (
	"math"
	"testing"
)

func TestProcParsers(t *testing.T) {
	if got := cpuModel("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: other\n"); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel("processor : 0\n"); got != "" {
		t.Errorf("cpuModel without a model = %q", got)
	}
	if got := memTotalGiB("MemTotal:       24684084 kB\nMemFree: 1 kB\n"); math.Abs(got-23.54) > 0.01 {
		t.Errorf("memTotalGiB = %v", got)
	}
	if got := loadAvg("0.79 1.60 0.86 4/212 14755\n"); got != "0.79 1.60 0.86" {
		t.Errorf("loadAvg = %q", got)
	}
	changed, untracked := gitStatusCounts(" M Makefile\nA  x.go\n?? tools/bench/\n?? y\n")
	if changed != 2 || untracked != 2 {
		t.Errorf("gitStatusCounts = %d, %d", changed, untracked)
	}
}

func TestVersionPatterns(t *testing.T) {
	cases := []struct {
		name string
		got  string
		want string
	}{
		{"kafka", firstMatch(kafkaVersionRE, "<properties>\n    <kafka.version>4.1.1</kafka.version>\n"), "4.1.1"},
		{"jaeger release", firstMatch(jaegerReleaseRE, "const (\n\tjaegerRelease = \"2.13.0\"\n)"), "2.13.0"},
		{"jaeger image", firstMatch(jaegerImageRE, "JAEGER_LOCAL=localhost/sagashop-jaeger:2.13.0 # x"), "2.13.0"},
		{"postgres --version", firstMatch(postgresRE, "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), "15.18"},
		{"no match", firstMatch(kafkaVersionRE, "<version>1</version>"), ""},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
}
