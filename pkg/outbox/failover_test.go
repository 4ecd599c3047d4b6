package outbox_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// failoverBound is how long a silent leader may hold up its schema's
// outbox: PostgreSQL ends its session 8 s after its last query (the relay's
// lease), a standby's next lock attempt takes over, its first round
// publishes.
const failoverBound = 12 * time.Second

// A leader whose connection goes silent without closing (its host vanished:
// no FIN, no RST, nothing) is replaced within failoverBound. The silence is a
// proxy that stops copying and keeps both sockets open, so each side's kernel
// still acknowledges what it is sent and TCP alone never notices.
func TestSilentLeaderIsReplacedWithinTheBound(t *testing.T) {
	t.Parallel()
	direct, schema := testenv.Postgres(t)
	for _, ddl := range []string{outbox.Schema, outbox.DeadLetterSchema} {
		if _, err := direct.Exec(context.Background(), ddl); err != nil {
			t.Fatal(err)
		}
	}
	brokers := testenv.Kafka(t)
	topic := readyTopic(t, brokers)
	ctx := context.Background()

	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	p := startFreezingProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(p.port())
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	proxied, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxied.Close)

	// The relay behind the proxy leads: it publishes before the other exists.
	startRelay(t, outbox.RelayConfig{Pool: proxied, Publisher: newWriter(t, brokers), PollInterval: 100 * time.Millisecond})
	writeEvents(t, ctx, direct, topic, newEvent(t, "first"))
	testenv.WaitFor(t, 10*time.Second, "the first leader publishing", func() bool { return pendingRows(t, direct) == 0 })
	startRelay(t, outbox.RelayConfig{Pool: direct, Publisher: newWriter(t, brokers), PollInterval: 100 * time.Millisecond})
	time.Sleep(300 * time.Millisecond) // the standby has tried the lock

	p.freeze()
	cut := time.Now()
	writeEvents(t, ctx, direct, topic, newEvent(t, "after"))
	testenv.WaitFor(t, failoverBound, "the standby publishing after the leader went silent", func() bool {
		return pendingRows(t, direct) == 0
	})
	t.Logf("failover: the row written at the cut published after %s", time.Since(cut).Round(10*time.Millisecond))
	readTopic(t, brokers, topic, 2, 10*time.Second)
}

// freezingProxy forwards TCP connections to target until freeze, after
// which it copies nothing more, on old and new connections alike, and
// closes nothing until the test ends.
type freezingProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{}
	conns  []net.Conn
}

func startFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{l: l, target: target, frozen: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *freezingProxy) port() int { return p.l.Addr().(*net.TCPAddr).Port }

func (p *freezingProxy) freeze() { close(p.frozen) }

func (p *freezingProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		go func() {
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, up)
			p.mu.Unlock()
			go p.pipe(up, c)
			p.pipe(c, up)
		}()
	}
}

// pipe copies from src to dst until freeze, then holds both open.
func (p *freezingProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-p.frozen:
			return
		default:
		}
		_ = src.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-p.frozen:
				return // dropped: what a vanished host never receives
			default:
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				continue
			}
			return
		}
	}
}

func (p *freezingProxy) close() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// A healthy leader keeps its lease however long it has nothing to publish,
// even with a poll interval longer than the session's idle limit: its
// heartbeat is every second.
func TestIdleLeaderKeepsTheLease(t *testing.T) {
	t.Parallel()
	pool := setup(t)
	brokers := testenv.Kafka(t)
	topic := readyTopic(t, brokers)
	var logs lockedLog
	startRelay(t, outbox.RelayConfig{Pool: pool, Publisher: newWriter(t, brokers), PollInterval: 20 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), nil))})
	ctx := context.Background()
	writeEvents(t, ctx, pool, topic, newEvent(t, "before"))
	testenv.WaitFor(t, 10*time.Second, "the first event published", func() bool { return pendingRows(t, pool) == 0 })
	time.Sleep(10 * time.Second) // longer than the 8 s idle limit
	writeEvents(t, ctx, pool, topic, newEvent(t, "after"))
	testenv.WaitFor(t, 5*time.Second, "the event after the quiet spell published", func() bool { return pendingRows(t, pool) == 0 })
	if got := logs.String(); strings.Count(got, "outbox relay leading") != 1 || strings.Contains(got, "interrupted") {
		t.Fatalf("the leader lost its lease while idle:\n%s", got)
	}
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
