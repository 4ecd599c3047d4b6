package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// envSnapshot is the machine and the versions a bench ran on, taken by
// bench env when the bench starts (a report drawn later from the same
// directory still names what was measured). A field it could not learn is
// empty.
type envSnapshot struct {
	Time       time.Time `json:"time"`
	NProc      int       `json:"nproc"`
	CPUModel   string    `json:"cpu_model"`
	MemoryGiB  float64   `json:"memory_gib"`
	LoadAvg    string    `json:"loadavg"` // the first three fields of /proc/loadavg
	Go         string    `json:"go"`
	GitHead    string    `json:"git_head"`
	GitChanged int       `json:"git_changed"`   // tracked files with uncommitted changes
	GitUntrack int       `json:"git_untracked"` // untracked files (not ignored)
	Postgres   string    `json:"postgres"`
	Kafka      string    `json:"kafka"`
	Jaeger     string    `json:"jaeger"`
}

func snapshotEnv(root, pgPort string) envSnapshot {
	e := envSnapshot{Time: time.Now().UTC().Truncate(time.Second), NProc: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		e.CPUModel = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		e.MemoryGiB = memTotalGiB(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		e.LoadAvg = loadAvg(string(b))
	}
	if out, err := command(root, "go", "version"); err == nil {
		// "go version go1.26.8 linux/amd64"
		if f := strings.Fields(out); len(f) >= 3 {
			e.Go = f[2]
		}
	}
	if e.Go == "" {
		e.Go = runtime.Version() + " (this tool's)"
	}
	if out, err := command(root, "git", "rev-parse", "--short", "HEAD"); err == nil {
		e.GitHead = out
	}
	if out, err := command(root, "git", "status", "--porcelain"); err == nil {
		e.GitChanged, e.GitUntrack = gitStatusCounts(out)
	}
	e.Postgres = postgresVersion(root, pgPort)
	if b, err := os.ReadFile(filepath.Join(root, "tools/kafka/pom.xml")); err == nil {
		e.Kafka = firstMatch(kafkaVersionRE, string(b))
	}
	if b, err := os.ReadFile(filepath.Join(root, "e2e/compose_test.go")); err == nil {
		e.Jaeger = firstMatch(jaegerReleaseRE, string(b))
	}
	if e.Jaeger == "" {
		if b, err := os.ReadFile(filepath.Join(root, "tools/containers/common.sh")); err == nil {
			e.Jaeger = firstMatch(jaegerImageRE, string(b))
		}
	}
	return e
}

var (
	kafkaVersionRE  = regexp.MustCompile(`<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>`)
	jaegerReleaseRE = regexp.MustCompile(`jaegerRelease\s*=\s*"([^"]+)"`)
	jaegerImageRE   = regexp.MustCompile(`JAEGER_LOCAL=\S*:([0-9][0-9.]*)`)
	postgresRE      = regexp.MustCompile(`PostgreSQL\)?\s+([0-9][^\s]*)`)
)

// postgresVersion is what `postgres --version` says, or else the local
// server's server_version (a fresh Debian has postgres off PATH, in
// /usr/lib/postgresql/NN/bin; psql is on it).
func postgresVersion(root, port string) string {
	if out, err := command(root, "postgres", "--version"); err == nil {
		if v := firstMatch(postgresRE, out); v != "" {
			return v
		}
	}
	out, err := command(root, "psql", "-X", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "sagashop",
		"-tAc", "SHOW server_version")
	if err == nil && out != "" {
		if f := strings.Fields(out); len(f) > 0 {
			return f[0] + " (server_version)"
		}
	}
	return ""
}

func command(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return strings.TrimSpace(out.String()), nil
}

func firstMatch(re *regexp.Regexp, s string) string {
	if m := re.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// memTotalGiB is MemTotal of /proc/meminfo (in kB there) in GiB.
func memTotalGiB(meminfo string) float64 {
	sc := bufio.NewScanner(strings.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0
			}
			return kb / (1 << 20)
		}
	}
	return 0
}

// loadAvg is the 1, 5 and 15 minute load averages of /proc/loadavg.
func loadAvg(s string) string {
	f := strings.Fields(s)
	if len(f) < 3 {
		return strings.TrimSpace(s)
	}
	return strings.Join(f[:3], " ")
}

// gitStatusCounts counts the lines of git status --porcelain: changed
// tracked files and untracked ones.
func gitStatusCounts(porcelain string) (changed, untracked int) {
	for line := range strings.Lines(porcelain) {
		switch {
		case strings.HasPrefix(line, "??"):
			untracked++
		case strings.TrimSpace(line) != "":
			changed++
		}
	}
	return changed, untracked
}
