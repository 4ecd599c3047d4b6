package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// The container engine is asked directly before testcontainers-go asks it
// anything. testcontainers' first call (docker info) finds the engine and
// caches the answer for the life of the process, an error included; when
// that first call had a short deadline and the engine was slow, as podman's
// /info is on a busy machine, every later call panicked
// (MustExtractDockerSocket). So the suite waits until the engine answers
// /_ping and /info, with one generous deadline and no shorter one per
// attempt, then lets testcontainers make its first call with the same
// generous deadline.

// engineWait bounds the wait for the engine. podman's /info took several
// seconds on a 2-core machine running other tests.
const engineWait = 3 * time.Minute

// engineEndpoint is the Docker API endpoint to use: DOCKER_HOST, else the
// first of the usual sockets that exists.
func engineEndpoint() (string, error) {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h, nil
	}
	candidates := []string{"/var/run/docker.sock"}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, "docker.sock"), filepath.Join(d, "podman", "podman.sock"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".docker", "run", "docker.sock"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return "unix://" + c, nil
		}
	}
	return "", fmt.Errorf("DOCKER_HOST is unset and there is no socket at %s", strings.Join(candidates, ", "))
}

// pingEngine asks host's /_ping once, within timeout.
func pingEngine(host string, timeout time.Duration) error {
	cli, err := client.New(client.FromEnv, client.WithHost(host))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = cli.Ping(ctx, client.PingOptions{})
	return err
}

// waitForEngine returns once host answers /_ping and then /info, trying
// again every half second until wait has passed. An attempt may take all
// the time that is left: a slow answer is still an answer.
func waitForEngine(host string, wait time.Duration) (attempts int, err error) {
	cli, err := client.New(client.FromEnv, client.WithHost(host))
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	deadline := time.Now().Add(wait)
	for {
		attempts++
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		_, err = cli.Ping(ctx, client.PingOptions{})
		if err == nil {
			_, err = cli.Info(ctx, client.InfoOptions{})
		}
		cancel()
		if err == nil {
			return attempts, nil
		}
		if time.Until(deadline) < 500*time.Millisecond {
			return attempts, fmt.Errorf("%s did not answer /_ping and /info within %s (%d attempts): %w", host, wait, attempts, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// readyEngine waits for the engine at host, then makes testcontainers'
// first call (which finds the engine and caches what it found) under the
// same generous deadline. testcontainers is pointed at host itself.
func readyEngine(t *testing.T, host string) {
	t.Helper()
	start := time.Now()
	attempts, err := waitForEngine(host, engineWait)
	if err != nil {
		t.Fatalf("container engine: %v", err)
	}
	t.Logf("container engine %s answered /_ping and /info after %s (%d attempts)", host, time.Since(start).Round(time.Millisecond), attempts)
	if os.Getenv("DOCKER_HOST") == "" {
		t.Setenv("DOCKER_HOST", host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), engineWait)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatalf("testcontainers: %v", err)
	}
	defer cli.Close()
	if _, err := cli.Info(ctx, client.InfoOptions{}); err != nil {
		t.Fatalf("testcontainers: %v", err)
	}
}

func TestWaitForEngine(t *testing.T) {
	t.Run("slow engine", func(t *testing.T) {
		// Its socket appears after a second (the engine is starting), then
		// it takes longer over /info than the deadline that used to break
		// the suite (3 s).
		host, infos := fakeEngine(t, time.Second, 3500*time.Millisecond)
		start := time.Now()
		attempts, err := waitForEngine(host, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if attempts < 2 || infos() != 1 {
			t.Errorf("%d attempts, %d /info requests; want at least 2 attempts (the socket was missing), 1 /info", attempts, infos())
		}
		t.Logf("answered after %s, %d attempts", time.Since(start).Round(time.Millisecond), attempts)
	})
	t.Run("no engine", func(t *testing.T) {
		host := "unix://" + filepath.Join(t.TempDir(), "absent.sock")
		start := time.Now()
		_, err := waitForEngine(host, 2*time.Second)
		if err == nil || !strings.Contains(err.Error(), host) {
			t.Fatalf("err = %v, want one naming %s", err, host)
		}
		if d := time.Since(start); d < time.Second || d > 5*time.Second {
			t.Errorf("gave up after %s, want about the 2 s asked for", d)
		}
	})
	t.Run("endpoint", func(t *testing.T) {
		t.Setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
		if h, err := engineEndpoint(); err != nil || h != "tcp://127.0.0.1:1" {
			t.Errorf("engineEndpoint() = %q, %v; want DOCKER_HOST", h, err)
		}
		t.Setenv("DOCKER_HOST", "")
		dir := t.TempDir()
		t.Setenv("XDG_RUNTIME_DIR", dir)
		t.Setenv("HOME", t.TempDir())
		if _, err := os.Stat("/var/run/docker.sock"); errors.Is(err, os.ErrNotExist) {
			if h, err := engineEndpoint(); err == nil {
				t.Errorf("engineEndpoint() = %q with no socket anywhere", h)
			}
			sock := filepath.Join(dir, "podman", "podman.sock")
			if err := os.Mkdir(filepath.Dir(sock), 0o700); err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if h, err := engineEndpoint(); err != nil || h != "unix://"+sock {
				t.Errorf("engineEndpoint() = %q, %v; want the podman socket", h, err)
			}
		}
	})
}

// fakeEngine serves a Docker API's /_ping and /info on a unix socket that
// appears after appear, answering /info after infoDelay; infos counts the
// /info requests.
func fakeEngine(t *testing.T, appear, infoDelay time.Duration) (host string, infos func() int) {
	t.Helper()
	dir, err := os.MkdirTemp("", "engine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	var n atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.41")
		_, _ = io.WriteString(w, "OK")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/info") {
			http.NotFound(w, r)
			return
		}
		n.Add(1)
		time.Sleep(infoDelay)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ServerVersion":"fake","OperatingSystem":"fake"}`)
	})
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	timer := time.AfterFunc(appear, func() {
		defer close(done)
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Error(err)
			return
		}
		go func() { _ = srv.Serve(l) }()
	})
	t.Cleanup(func() {
		if timer.Stop() {
			return
		}
		<-done
		_ = srv.Close()
	})
	return "unix://" + sock, func() int { return int(n.Load()) }
}
