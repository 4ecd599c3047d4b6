package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sagashop/sagashop/pkg/broker"
)

// PrivateKafka is a single-node Apache Kafka broker of one test's own, on free
// loopback ports with its data in a temporary folder, for tests that stop and
// restart the broker without disturbing the shared one. It uses the jars that
// `make infra-up` fetched into .local/kafka/libs.
type PrivateKafka struct {
	t       testing.TB
	root    string
	dir     string
	port    int
	props   string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// StartPrivateKafka formats and starts a private broker; it is stopped when
// the test ends. Its settings are those of every Sagashop broker
// (tools/kafka/broker.properties), placed on loopback the way tools/infra.sh
// places the local stack's (tools/kafka/local.properties).
func StartPrivateKafka(t testing.TB) *PrivateKafka {
	t.Helper()
	root := RepoRoot(t)
	libs := kafkaLibs(root)
	if _, err := os.Stat(libs); err != nil {
		t.Fatalf("no Kafka jars in %s: %s", libs, howToStart)
	}
	k := &PrivateKafka{t: t, root: root, dir: t.TempDir(), port: FreePort(t)}
	controller := FreePort(t)
	k.props = filepath.Join(k.dir, "server.properties")
	k.logPath = filepath.Join(k.dir, "kafka.log")
	props, err := LocalKafkaProperties(root, k.port, controller, filepath.Join(k.dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.props, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	format := k.java("kafka.tools.StorageTool", "format", "--standalone", "-t", "c2FnYXNob3AtdGVzdC0xMQ", "-c", k.props)
	if out, err := format.CombinedOutput(); err != nil {
		t.Fatalf("format private kafka: %v\n%s", err, out)
	}
	k.Start()
	t.Cleanup(k.Stop)
	return k
}

// kafkaLibs is where tools/infra.sh keeps the broker jars (under
// SAGASHOP_LOCAL when set, as infra.sh does).
func kafkaLibs(root string) string {
	local := os.Getenv("SAGASHOP_LOCAL")
	if local == "" {
		local = filepath.Join(root, ".local")
	}
	return filepath.Join(local, "kafka", "libs")
}

func (k *PrivateKafka) java(args ...string) *exec.Cmd {
	full := append([]string{
		"-Xmx512m", "-Xms256m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(k.root, "tools", "kafka", "log4j2.properties"),
		"-cp", filepath.Join(kafkaLibs(k.root), "*"),
	}, args...)
	return exec.Command("java", full...)
}

// Brokers is the private broker's address list.
func (k *PrivateKafka) Brokers() []string { return []string{"127.0.0.1:" + strconv.Itoa(k.port)} }

// Start starts the broker (again) and waits until it answers.
func (k *PrivateKafka) Start() {
	k.t.Helper()
	logf, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		k.t.Fatal(err)
	}
	k.cmd = k.java("kafka.Kafka", k.props)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		k.t.Fatalf("start private kafka: %v", err)
	}
	k.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}, f *os.File) {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}(k.cmd, k.exited, logf)
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := broker.Ping(ctx, k.Brokers())
		cancel()
		if err == nil {
			return
		}
		select {
		case <-k.exited:
			log, _ := os.ReadFile(k.logPath)
			k.t.Fatalf("private kafka exited during start-up:\n%s", tail(log, 3000))
		default:
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("private kafka not ready after 90s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the broker with SIGTERM (SIGKILL after 30 s) and waits for it.
func (k *PrivateKafka) Stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	select {
	case <-k.exited:
		return
	default:
	}
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-k.exited
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
