package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// services in start order (the catalog owner first).
var services = []string{"inventory", "payment", "order", "shipping", "email"}

// stack is the run's private infrastructure and its five services.
type stack struct {
	cfg    config
	log    *logger
	bin    string
	logs   string
	admin  *pgxpool.Pool // superuser on the private cluster's sagashop database
	net    *netProxy     // Toxiproxy between the services and PostgreSQL
	client *http.Client
	infra  sync.Mutex // held by a Kafka or PostgreSQL fault (and a poison write), so they never overlap
	procs  map[string]*proc
	mu     sync.Mutex
	exits  []string // services that exited without being killed
}

// proc is one supervised service.
type proc struct {
	name   string
	addr   string
	mu     sync.Mutex // one signal or start at a time
	cmd    *exec.Cmd
	exited chan struct{}
	killed bool // the tool ended it; otherwise an exit is unexpected and it is restarted
	paused bool
}

func newStack(cfg config, log *logger) *stack {
	return &stack{
		cfg: cfg, log: log,
		bin:    filepath.Join(cfg.Out, "bin"),
		logs:   filepath.Join(cfg.Out, "logs"),
		client: &http.Client{Timeout: 5 * time.Second},
		procs:  map[string]*proc{},
	}
}

// infraCmd runs tools/infra.sh on the private stack.
func (s *stack) infraCmd(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.cfg.Root, "tools", "infra.sh"), args...)
	cmd.Dir = s.cfg.Root
	cmd.Env = append(os.Environ(),
		"SAGASHOP_LOCAL="+s.cfg.Local,
		"PG_PORT="+strconv.Itoa(s.cfg.PGPort),
		"KAFKA_PORT="+strconv.Itoa(s.cfg.KafkaPort),
		"KAFKA_CONTROLLER_PORT="+strconv.Itoa(s.cfg.KafkaControllerPort),
		"KAFKA_HEAP=-Xmx384m -Xms384m",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tools/infra.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// startInfra starts the private PostgreSQL and Kafka from empty data
// folders, so every run begins from nothing.
func (s *stack) startInfra(ctx context.Context) error {
	for _, p := range []int{s.cfg.PGPort, s.cfg.KafkaPort, s.cfg.KafkaControllerPort} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), time.Second); err == nil {
			c.Close()
			// Ours from a run that was interrupted: stop it first.
			if err := s.infraCmd(ctx, "down", "postgres", "kafka"); err != nil {
				return err
			}
			break
		}
	}
	for _, d := range []string{"postgres/data", "kafka/data"} {
		if err := os.RemoveAll(filepath.Join(s.cfg.Local, d)); err != nil {
			return err
		}
	}
	s.log.printf("starting the private PostgreSQL (%d) and Kafka (%d)", s.cfg.PGPort, s.cfg.KafkaPort)
	if err := s.infraCmd(ctx, "up", "postgres", "kafka"); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, s.adminURL())
	if err != nil {
		return err
	}
	s.admin = pool
	s.net, err = startNetProxy("127.0.0.1:" + strconv.Itoa(s.cfg.PGPort))
	return err
}

func (s *stack) adminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/sagashop?sslmode=disable&connect_timeout=3", s.cfg.PGPort)
}

func (s *stack) brokers() []string { return []string{"127.0.0.1:" + strconv.Itoa(s.cfg.KafkaPort)} }

// startServices builds the five binaries and starts them on free ports.
func (s *stack) startServices(ctx context.Context) error {
	if err := os.MkdirAll(s.logs, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-o", s.bin + "/"}
	for _, name := range services {
		args = append(args, "./services/"+name)
	}
	build := exec.CommandContext(ctx, "go", args...)
	build.Dir = s.cfg.Root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build services: %w\n%s", err, out)
	}
	for _, name := range services {
		port, err := freePort()
		if err != nil {
			return err
		}
		p := &proc{name: name, addr: "127.0.0.1:" + strconv.Itoa(port)}
		s.procs[name] = p
		if err := s.start(p); err != nil {
			return err
		}
	}
	for _, name := range services {
		if err := s.waitReady(ctx, name, 90*time.Second); err != nil {
			return err
		}
	}
	s.log.printf("services ready: %s", s.addrs())
	return nil
}

func (s *stack) addrs() string {
	var b []string
	for _, name := range services {
		b = append(b, name+"="+s.procs[name].addr)
	}
	return strings.Join(b, " ")
}

func (s *stack) url(name string) string { return "http://" + s.procs[name].addr }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start starts p's binary (p.mu held or p not yet shared). An exit the tool
// did not cause is recorded and the service is started again a second
// later, as a process supervisor would.
func (s *stack) start(p *proc) error {
	logf, err := os.OpenFile(filepath.Join(s.logs, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.bin, p.name))
	cmd.Env = append(os.Environ(),
		"HTTP_ADDR="+p.addr,
		fmt.Sprintf("DATABASE_URL=postgres://%s_svc@127.0.0.1:%d/sagashop?sslmode=disable", p.name, s.net.port()),
		"KAFKA_BROKERS="+strings.Join(s.brokers(), ","),
		"OTEL_SDK_DISABLED=true",
		"OTEL_SERVICE_NAME="+p.name,
		"LOG_LEVEL=info",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the tool itself be killed, its services go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.killed, p.paused = cmd, exited, false, false
	go func() {
		err := cmd.Wait()
		logf.Close()
		close(exited)
		p.mu.Lock()
		unexpected := !p.killed && p.cmd == cmd
		p.mu.Unlock()
		if !unexpected {
			return
		}
		s.mu.Lock()
		s.exits = append(s.exits, fmt.Sprintf("%s exited by itself at %.1fs: %v", p.name, time.Since(s.log.start).Seconds(), err))
		s.mu.Unlock()
		s.log.printf("%s exited by itself (%v); restarting it", p.name, err)
		time.Sleep(time.Second)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cmd == cmd && !p.killed {
			if err := s.start(p); err != nil {
				s.log.printf("restart %s: %v", p.name, err)
			}
		}
	}()
	return nil
}

func (s *stack) unexpectedExits() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.exits...)
}

// running reports whether a service runs and is not paused.
func (s *stack) running(name string) bool {
	p := s.procs[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.killed && !p.paused && p.cmd != nil
}

// kill SIGKILLs a service and waits for it to be gone.
func (s *stack) kill(name string) error {
	p := s.procs[name]
	p.mu.Lock()
	if p.killed {
		p.mu.Unlock()
		return fmt.Errorf("%s is down already", name)
	}
	p.killed = true
	err := p.cmd.Process.Signal(syscall.SIGKILL)
	exited := p.exited
	p.mu.Unlock()
	<-exited
	return err
}

// restart starts a killed service again on its address.
func (s *stack) restart(name string) error {
	p := s.procs[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.killed {
		return nil
	}
	return s.start(p)
}

// pause SIGSTOPs a service; resume SIGCONTs it.
func (s *stack) pause(name string) error {
	p := s.procs[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed || p.paused {
		return fmt.Errorf("%s is down or paused already", name)
	}
	p.paused = true
	return p.cmd.Process.Signal(syscall.SIGSTOP)
}

func (s *stack) resume(name string) error {
	p := s.procs[name]
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return nil
	}
	p.paused = false
	return p.cmd.Process.Signal(syscall.SIGCONT)
}

// killKafka SIGKILLs the broker (its pid from infra.sh's pidfile).
func (s *stack) killKafka() error {
	pidFile := filepath.Join(s.cfg.Local, "kafka", "kafka.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("kafka pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("kafka pid %q: %w", b, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), s.cfg.Local) {
		return fmt.Errorf("kafka pid %d is not the private broker", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z ") {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("kafka pid %d still there 30s after SIGKILL", pid)
}

func (s *stack) startKafka(ctx context.Context) error { return s.infraCmd(ctx, "up", "kafka") }

// stopPostgres stops the private cluster with -m immediate: no checkpoint,
// every connection cut, crash recovery on the next start.
func (s *stack) stopPostgres(ctx context.Context) error {
	bin, err := pgBin()
	if err != nil {
		return err
	}
	data := filepath.Join(s.cfg.Local, "postgres", "data")
	cmd := exec.CommandContext(ctx, "runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop -m immediate: %w\n%s", err, out)
	}
	return nil
}

func (s *stack) startPostgres(ctx context.Context) error { return s.infraCmd(ctx, "up", "postgres") }

// pgBin is the bin folder of the newest installed PostgreSQL (as
// tools/infra.sh finds it).
func pgBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	if len(dirs) == 0 {
		return "", errors.New("no PostgreSQL under /usr/lib/postgresql (make infra-up installs it)")
	}
	return dirs[len(dirs)-1], nil
}

// waitReady waits for a service's /readyz to answer 200.
func (s *stack) waitReady(ctx context.Context, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := s.client.Get(s.url(name) + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (log: %s)", name, timeout, filepath.Join(s.logs, name+".log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// heal makes sure every part runs and every service is ready. The faults
// restore what they break; this is the check that they did.
func (s *stack) heal(ctx context.Context) error {
	for _, name := range services {
		if err := s.resume(name); err != nil {
			return err
		}
		if err := s.restart(name); err != nil {
			return err
		}
	}
	for _, name := range services {
		if err := s.waitReady(ctx, name, 120*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// close stops the services (SIGTERM, then SIGKILL) and the private
// infrastructure.
func (s *stack) close() {
	for _, name := range services {
		p, ok := s.procs[name]
		if !ok {
			continue
		}
		p.mu.Lock()
		if p.cmd == nil || p.killed {
			p.mu.Unlock()
			continue
		}
		p.killed = true
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		exited := p.exited
		cmd := p.cmd
		p.mu.Unlock()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	if s.admin != nil {
		s.admin.Close()
	}
	if s.net != nil {
		s.net.stop()
	}
	// The binaries are rebuilt each run; the logs stay with the report.
	if err := os.RemoveAll(s.bin); err != nil {
		s.log.printf("remove %s: %v", s.bin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.infraCmd(ctx, "down", "postgres", "kafka"); err != nil {
		s.log.printf("stopping the private infrastructure: %v", err)
	}
}
