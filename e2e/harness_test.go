package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/testenv"
)

// services in start order; every one can start in any order, this one just
// gets the catalog owner up first.
var services = []string{"inventory", "payment", "order", "shipping", "email"}

// stack is the system under test: the five real binaries as processes on
// the infrastructure newInfra chose, with a database of their own.
type stack struct {
	t       *testing.T
	bin     string
	dbName  string
	infra   infra
	procs   map[string]*proc
	mu      *sync.Mutex
	client  *http.Client
	logsDir string
	env     map[string][]string // extra NAME=value settings by service (startStackEnv)
}

type proc struct {
	name   string
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// startStack builds the binaries and starts everything; it is torn down when
// t ends.
func startStack(t *testing.T) *stack {
	t.Helper()
	return startStackEnv(t, nil)
}

// startStackEnv is startStack with settings of this stack's own: env maps a
// service to NAME=value environment entries it gets on top of the harness's
// (on every start, restarts included), for example the order service's
// SAGA_DEADLINE.
func startStackEnv(t *testing.T, env map[string][]string) *stack {
	t.Helper()
	s := &stack{t: t, bin: t.TempDir(), procs: map[string]*proc{}, mu: &sync.Mutex{}, client: &http.Client{Timeout: 10 * time.Second}, logsDir: t.TempDir(), env: env}
	root := testenv.RepoRoot(t)

	start := time.Now()
	args := []string{"build", "-o", s.bin + "/"}
	for _, name := range services {
		args = append(args, "./services/"+name)
	}
	build := exec.Command("go", args...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build services: %v\n%s", err, out)
	}
	t.Logf("built %d services in %s", len(services), time.Since(start).Round(time.Millisecond))

	s.infra = newInfra(t)
	s.createDatabase(root)
	t.Logf("infrastructure (%s) ready after %s", s.infra.Name(), time.Since(start).Round(time.Millisecond))
	for _, name := range services {
		s.start(name, testenv.FreePort(t))
	}
	for _, name := range services {
		s.waitReady(name)
	}
	t.Cleanup(func() {
		for _, name := range services {
			s.stop(name)
		}
		if t.Failed() {
			for _, name := range services {
				if b, err := os.ReadFile(s.procs[name].log); err == nil {
					t.Logf("--- last log lines of %s:\n%s", name, tail(string(b), 40))
				}
			}
		}
	})
	t.Logf("stack ready in %s", time.Since(start).Round(time.Millisecond))
	return s
}

// createDatabase creates a database for this run, bootstrapped with the
// same roles and schemas as the local stack (tools/postgres/init.sql).
func (s *stack) createDatabase(root string) {
	t := s.t
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, s.infra.AdminURL(""))
	if err != nil {
		t.Fatalf("PostgreSQL is not reachable (%v): start the local stack with `make infra-up`", err)
	}
	defer admin.Close(ctx)
	s.dbName = testenv.Name("e2e")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+s.dbName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), s.infra.AdminURL(""))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE "+s.dbName+" WITH (FORCE)"); err != nil {
			t.Logf("drop database: %v", err)
		}
	})
	initSQL, err := os.ReadFile(filepath.Join(root, "tools", "postgres", "init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, s.adminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, string(initSQL)); err != nil {
		t.Fatalf("init.sql: %v", err)
	}
}

func (s *stack) adminURL() string { return s.infra.AdminURL(s.dbName) }

func (s *stack) start(name string, port int) {
	t := s.t
	p := &proc{name: name, addr: "127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(s.logsDir, name+".log")}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(s.bin, name))
	cmd.Env = append(os.Environ(),
		"HTTP_ADDR="+p.addr,
		"DATABASE_URL="+s.infra.ServiceURL(name+"_svc", s.dbName),
		"KAFKA_BROKERS="+strings.Join(s.infra.Brokers(), ","),
		"OTEL_EXPORTER_OTLP_ENDPOINT="+s.infra.OTLPEndpoint(),
		"OTEL_SERVICE_NAME="+name,
		"LOG_LEVEL=debug",
	)
	cmd.Env = append(cmd.Env, s.env[name]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
}

func (s *stack) proc(name string) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[name]
}

// stop sends SIGTERM and waits for a graceful exit.
func (s *stack) stop(name string) {
	p := s.proc(name)
	if p == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		s.t.Errorf("%s did not stop within 20s of SIGTERM", name)
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// kill sends SIGKILL: no graceful anything.
func (s *stack) kill(name string) {
	p := s.proc(name)
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// restart starts a stopped or killed service again on its old address.
func (s *stack) restart(name string) {
	p := s.proc(name)
	port, _ := strconv.Atoi(strings.TrimPrefix(p.addr, "127.0.0.1:"))
	s.start(name, port)
	s.waitReady(name)
}

func (s *stack) waitReady(name string) {
	t := s.t
	t.Helper()
	p := s.proc(name)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := s.client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited during start-up:\n%s", name, tail(string(b), 40))
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s not ready after 60s:\n%s", name, tail(string(b), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends a JSON request to a service and decodes a JSON response into
// out (when non-nil); it returns the status code.
func (s *stack) call(method, service, path string, body any, out any, headers ...string) int {
	s.t.Helper()
	code, err := s.tryCall(method, service, path, body, out, headers...)
	if err != nil {
		s.t.Fatal(err)
	}
	return code
}

// tryCall is call returning its error instead of failing the test, for
// goroutines other than the test's, which must not call t.Fatal.
func (s *stack) tryCall(method, service, path string, body any, out any, headers ...string) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+s.proc(service).addr+path, r)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s %s: %w", method, service, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%s %s %s: read body: %w", method, service, path, err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return 0, fmt.Errorf("%s %s %s: decode %q: %w", method, service, path, raw, err)
		}
	}
	if out != nil && resp.StatusCode >= 300 {
		if p, ok := out.(*problem); ok {
			_ = json.Unmarshal(raw, p)
		}
	}
	return resp.StatusCode, nil
}

type problem struct {
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail"`
	Errors map[string]string `json:"errors"`
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, timeout, what, cond)
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// assertCorrelatedLogs checks that each service wrote at least one JSON log
// line while handling the order's events that carries the order id, the
// event id and the trace and span ids.
func (s *stack) assertCorrelatedLogs(orderID string, services ...string) {
	s.t.Helper()
	for _, name := range services {
		b, err := os.ReadFile(s.proc(name).log)
		if err != nil {
			s.t.Fatal(err)
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) != nil || l["order_id"] != orderID {
				continue
			}
			if l["event_id"] != nil && l["trace_id"] != nil && l["span_id"] != nil && l["service"] == name {
				found = true
				break
			}
		}
		if !found {
			s.t.Errorf("%s logged no line with order_id, event_id, trace_id and span_id for order %s", name, orderID)
		}
	}
}
