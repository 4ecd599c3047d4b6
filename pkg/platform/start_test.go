package platform

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// lockedBuffer collects a service's log lines, written from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lateForwarder listens on a port of its own and forwards to target once
// open is called; until then it accepts nothing (nothing listens).
type lateForwarder struct {
	addr, target string
	mu           sync.Mutex
	l            net.Listener
	conns        []net.Conn
}

func newLateForwarder(t *testing.T, target string) *lateForwarder {
	f := &lateForwarder{addr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), target: target}
	t.Cleanup(f.close)
	return f
}

func (f *lateForwarder) open(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.l = l
	f.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", f.target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

func (f *lateForwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.l != nil {
		f.l.Close()
	}
	for _, c := range f.conns {
		c.Close()
	}
}

var testMigrations = fstest.MapFS{"migrations/00010_init.sql": &fstest.MapFile{
	Data: []byte("-- +goose Up\nCREATE TABLE started (id int);\n"),
}}

// startEnv is the environment of a service whose database and Kafka are
// reached through forwarders that are not open yet.
func startEnv(t *testing.T) (env map[string]string, pg, kafka *lateForwarder, service string) {
	t.Helper()
	_, schema := testenv.Postgres(t)
	brokers := testenv.Kafka(t)
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	pg = newLateForwarder(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	kafka = newLateForwarder(t, brokers[0])
	service = testenv.Name("platform")
	t.Cleanup(func() { _ = broker.DeleteTopics(context.Background(), brokers, events.DeadLetterTopic(service)) })
	env = map[string]string{
		"HTTP_ADDR":         "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		"DATABASE_URL":      "postgres://" + cfg.ConnConfig.User + "@" + pg.addr + "/" + cfg.ConnConfig.Database + "?sslmode=disable&search_path=" + schema,
		"KAFKA_BROKERS":     kafka.addr,
		"OTEL_SDK_DISABLED": "true",
	}
	return env, pg, kafka, service
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A service started while its database and Kafka are down stays up, alive
// and not ready, says what it waits for, and serves once they are back.
func TestStartWaitsForTheDatabaseAndKafka(t *testing.T) {
	env, pg, kafka, service := startEnv(t)
	cfg, err := ParseConfig(func(k string) string { return env[k] }, service, ":0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs lockedBuffer
	type started struct {
		p   *Platform
		err error
	}
	startc := make(chan started, 1)
	go func() {
		p, err := Start(ctx, cfg, &logs, testMigrations)
		startc <- started{p, err}
	}()
	base := "http://" + env["HTTP_ADDR"]

	for _, what := range []string{"database", "kafka"} {
		testenv.WaitFor(t, 10*time.Second, "a WARN that it waits for its "+what, func() bool {
			return strings.Contains(logs.String(), `"msg":"waiting for `+what+`"`)
		})
		if code, body := get(base + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"waiting_for":"`+what+`"`) {
			t.Fatalf("/readyz while waiting for %s: %d %s", what, code, body)
		}
		if code, _ := get(base + "/livez"); code != http.StatusOK {
			t.Fatalf("/livez while waiting for %s: %d", what, code)
		}
		if code, _ := get(base + "/hello"); code != http.StatusServiceUnavailable {
			t.Fatalf("/hello while waiting for %s: %d", what, code)
		}
		select {
		case s := <-startc:
			t.Fatalf("Start returned while %s was down: %v", what, s.err)
		default:
		}
		if what == "database" {
			pg.open(t)
		} else {
			kafka.open(t)
		}
	}

	var s started
	select {
	case s = <-startc:
	case <-time.After(30 * time.Second):
		t.Fatalf("Start did not return within 30 s of both coming back:\n%s", logs.String())
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	defer s.p.Close()
	runc := make(chan error, 1)
	go func() {
		runc <- s.p.Run(ctx, Parts{Routes: func(r chi.Router) {
			r.Get("/hello", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) })
		}})
	}()
	testenv.WaitFor(t, 10*time.Second, "/readyz 200", func() bool { code, _ := get(base + "/readyz"); return code == http.StatusOK })
	if code, body := get(base + "/hello"); code != http.StatusOK || body != "hello" {
		t.Fatalf("/hello: %d %s", code, body)
	}
	var n int
	if err := s.p.Pool.QueryRow(ctx, `SELECT count(*) FROM started`).Scan(&n); err != nil {
		t.Fatalf("the service's migration: %v", err)
	}
	cancel()
	select {
	case err := <-runc:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop within 15 s")
	}
}

// SIGTERM while waiting: Start gives up at once, says so, and frees the port.
func TestStartStopsWhileWaiting(t *testing.T) {
	env, _, _, service := startEnv(t)
	cfg, err := ParseConfig(func(k string) string { return env[k] }, service, ":0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs lockedBuffer
	errc := make(chan error, 1)
	go func() {
		p, err := Start(ctx, cfg, &logs, testMigrations)
		if p != nil {
			p.Close()
		}
		errc <- err
	}()
	testenv.WaitFor(t, 10*time.Second, "waiting for the database", func() bool {
		return strings.Contains(logs.String(), `"msg":"waiting for database"`)
	})
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped while waiting for database") {
			t.Fatalf("Start: %v, want stopped while waiting, context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return within 5 s of the cancellation")
	}
	if code, _ := get("http://" + env["HTTP_ADDR"] + "/livez"); code != 0 {
		t.Fatalf("/livez after Start gave up: %d, want no server", code)
	}
}

// What waiting does not cure ends Start at once: here topics the single
// local broker cannot replicate three times.
func TestStartFailsOnWhatWaitingDoesNotCure(t *testing.T) {
	env, pg, kafka, service := startEnv(t)
	pg.open(t)
	kafka.open(t)
	env["KAFKA_TOPIC_REPLICATION_FACTOR"] = "3"
	cfg, err := ParseConfig(func(k string) string { return env[k] }, service, ":0")
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	errc := make(chan error, 1)
	go func() {
		p, err := Start(context.Background(), cfg, &logs, testMigrations)
		if p != nil {
			p.Close()
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "replication factor") {
			t.Fatalf("Start: %v, want the broker's refusal of replication factor 3", err)
		}
		if strings.Contains(logs.String(), "waiting for kafka") {
			t.Errorf("Start waited on a refusal:\n%s", logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Start still waiting after 30 s:\n%s", logs.String())
	}
}
