// Package testenv gives tests the real infrastructure of the local stack
// (make infra-up): a PostgreSQL schema of their own, Kafka topics of their
// own, and, for tests that stop and restart the broker, a private Kafka
// broker. When the infrastructure is missing, a test fails (never skips)
// with a message that says how to start it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/broker"
)

const howToStart = "start the local stack with `make infra-up` (or run the tests with `make test`, which starts it)"

// DatabaseURL is the superuser URL of the local stack's database; override
// with SAGASHOP_TEST_DATABASE_URL.
func DatabaseURL() string {
	if u := os.Getenv("SAGASHOP_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/sagashop?sslmode=disable"
}

// Brokers are the local stack's Kafka brokers; override with KAFKA_BROKERS.
func Brokers() []string {
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		return strings.Split(b, ",")
	}
	return []string{"127.0.0.1:9092"}
}

// Name returns a unique lower-case identifier with prefix, usable as a schema,
// topic or consumer group name.
func Name(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// Postgres returns a pool whose connections use a fresh schema as their
// search_path, dropped when the test ends, and the schema's name.
func Postgres(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, DatabaseURL())
	if err != nil {
		t.Fatalf("PostgreSQL is not reachable (%v): %s", err, howToStart)
	}
	defer admin.Close(ctx)
	schema := Name("test")
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	cfg, err := pgxpool.ParseConfig(DatabaseURL())
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, DatabaseURL())
		if err != nil {
			t.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	return pool, schema
}

// Kafka returns the local stack's brokers after checking that they answer.
func Kafka(t testing.TB) []string {
	t.Helper()
	brokers := Brokers()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := broker.Ping(ctx, brokers); err != nil {
		t.Fatalf("Kafka is not reachable at %v (%v): %s", brokers, err, howToStart)
	}
	return brokers
}

// Topics creates fresh topics with events.Partitions-like partition counts
// (partitions each) named after prefixes, deleted when the test ends.
func Topics(t testing.TB, brokers []string, partitions int, prefixes ...string) []string {
	t.Helper()
	names := make([]string, len(prefixes))
	for i, p := range prefixes {
		names[i] = strings.ReplaceAll(Name(p), "_", ".")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, brokers, partitions, names...); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := broker.DeleteTopics(ctx, brokers, names...); err != nil {
			t.Logf("delete topics: %v", err)
		}
	})
	return names
}

// RepoRoot is the folder holding the module's go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond every 20 ms until it returns true or timeout passes,
// then fails the test with msg.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
