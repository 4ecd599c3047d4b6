package web_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sagashop/sagashop/pkg/testenv"
	"github.com/sagashop/sagashop/pkg/web"
)

var errTaken = errors.New("taken")

// placeOrderLike is a use case shaped like POST /orders: decode, one
// transaction on the pool, answer; its errors go through Problems.Write.
func placeOrderLike(pool *pgxpool.Pool) http.HandlerFunc {
	problems := web.Problems{errTaken: {Status: http.StatusConflict}}
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			N int `json:"n"`
		}
		if err := web.Decode(w, r, &req); err != nil {
			problems.Write(w, r, err)
			return
		}
		var n int
		err := pgx.BeginFunc(r.Context(), pool, func(tx pgx.Tx) error {
			return tx.QueryRow(r.Context(), "SELECT $1::int + 1", req.N).Scan(&n)
		})
		if err != nil {
			problems.Write(w, r, fmt.Errorf("place order: %w", err))
			return
		}
		web.Encode(w, http.StatusCreated, map[string]int{"n": n})
	}
}

// proxy forwards TCP connections to PostgreSQL until it is closed, which
// cuts every connection it carries: the service sees its database go away
// mid-session, as during a restart.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) Addr() string { return p.l.Addr().String() }

func (p *proxy) Close() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func TestDatabaseUnavailableIs503(t *testing.T) {
	testenv.Postgres(t) // fails with how to start PostgreSQL if it is not there
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	pgAddr := net.JoinHostPort(cfg.ConnConfig.Host, fmt.Sprint(cfg.ConnConfig.Port))
	prx := startProxy(t, pgAddr)

	newPool := func(addr string) *pgxpool.Pool {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Copy()
		c.ConnConfig.Host, c.ConnConfig.Port = host, uint16(n)
		c.ConnConfig.ConnectTimeout = 2 * time.Second
		pool, err := pgxpool.NewWithConfig(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}
	nowhere := newPool(fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	restarting := newPool(prx.Addr())

	var logs bytes.Buffer
	rcfg := web.RouterConfig{Service: "test", Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		TracerProvider: noop.NewTracerProvider(), Registry: prometheus.NewRegistry()}
	r, err := web.NewRouter(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Route("/down", func(r chi.Router) { r.Post("/orders", placeOrderLike(nowhere)) })
	r.Route("/restarting", func(r chi.Router) { r.Post("/orders", placeOrderLike(restarting)) })
	h := web.Handler(r, rcfg)

	post := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"n": 41}`)))
		return rec
	}
	require503 := func(name string, rec *httptest.ResponseRecorder) {
		t.Helper()
		var p web.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("%s: body %q: %v", name, rec.Body, err)
		}
		if rec.Code != http.StatusServiceUnavailable || p.Status != http.StatusServiceUnavailable || p.Title != "service temporarily unavailable" {
			t.Fatalf("%s: status %d, problem %+v; want 503", name, rec.Code, p)
		}
		if got := rec.Header().Get("Retry-After"); got != fmt.Sprint(web.RetryAfterSeconds) {
			t.Fatalf("%s: Retry-After %q", name, got)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%s: content type %q", name, ct)
		}
		if strings.Contains(rec.Body.String(), "127.0.0.1") || strings.Contains(rec.Body.String(), "refused") {
			t.Fatalf("%s: internal error text reached the client: %s", name, rec.Body)
		}
	}

	require503("nothing listens", post("/down/orders"))

	if rec := post("/restarting/orders"); rec.Code != http.StatusCreated {
		t.Fatalf("through the proxy while PostgreSQL is up: %d %s", rec.Code, rec.Body)
	}
	prx.Close() // PostgreSQL goes away under an open connection
	require503("connection lost", post("/restarting/orders"))
	require503("no new connection", post("/restarting/orders"))

	// Each failure is logged once, at warn, with the error.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3: %s", len(lines), logs.String())
	}
	for _, l := range lines {
		var rec struct {
			Level, Msg, Error string
			Status            int
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec.Level != "WARN" || rec.Msg != "request failed" || rec.Status != 503 || rec.Error == "" {
			t.Fatalf("log line %s, want a WARN request failed with status 503 and the error", l)
		}
	}
}

func TestOtherServerErrorsStay500(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	rcfg := web.RouterConfig{Service: "test", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		TracerProvider: noop.NewTracerProvider(), Registry: prometheus.NewRegistry()}
	r, err := web.NewRouter(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Post("/orders", placeOrderLike(pool))
	rec := httptest.NewRecorder()
	// 2^31-1 + 1 overflows int: a query error that retrying cannot cure.
	web.Handler(r, rcfg).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"n": 2147483647}`)))
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Retry-After") != "" {
		t.Fatalf("status %d, Retry-After %q; want 500 without", rec.Code, rec.Header().Get("Retry-After"))
	}
}
