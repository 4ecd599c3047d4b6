package platform

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string
		check   func(t *testing.T, c Config)
	}{
		{"defaults fit the local stack", nil, nil, func(t *testing.T, c Config) {
			if c.HTTPAddr != ":8082" || c.DatabaseURL != "postgres://payment_svc@127.0.0.1:5432/sagashop?sslmode=disable" ||
				c.DBMaxConns != 10 || strings.Join(c.Brokers, ",") != "127.0.0.1:9092" || c.LogLevel != slog.LevelInfo ||
				c.Trace.ServiceName != "payment" || c.Trace.Endpoint != "http://127.0.0.1:4317" {
				t.Errorf("%+v", c)
			}
			want := TopicConfig{ReplicationFactor: 1, DeadLetterRetention: 30 * 24 * time.Hour}
			if c.Topics != want {
				t.Errorf("topics %+v, want %+v", c.Topics, want)
			}
			if c.Consumer != (ConsumerConfig{}) {
				t.Errorf("consumer %+v, want the package's defaults (zero)", c.Consumer)
			}
			ev, dlq := c.Topics.EventTopic("orders.events"), c.Topics.DeadLetterTopic("payment.dlq")
			if ev.ReplicationFactor != 1 || ev.Partitions != 3 || len(ev.Config) != 0 {
				t.Errorf("event topic %+v: want RF 1, 3 partitions, the broker's settings", ev)
			}
			if dlq.Config["retention.ms"] != "2592000000" || len(dlq.Config) != 1 {
				t.Errorf("dead-letter topic %+v: want retention.ms 30 days", dlq)
			}
		}},
		{"a cluster's topics", map[string]string{"KAFKA_TOPIC_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2",
			"KAFKA_TOPIC_RETENTION": "168h", "KAFKA_DLQ_RETENTION": "infinite"}, nil,
			func(t *testing.T, c Config) {
				ev, dlq := c.Topics.EventTopic("orders.events"), c.Topics.DeadLetterTopic("payment.dlq")
				if ev.ReplicationFactor != 3 || ev.Config["min.insync.replicas"] != "2" || ev.Config["retention.ms"] != "604800000" {
					t.Errorf("event topic %+v", ev)
				}
				if dlq.ReplicationFactor != 3 || dlq.Config["min.insync.replicas"] != "2" || dlq.Config["retention.ms"] != "-1" {
					t.Errorf("dead-letter topic %+v", dlq)
				}
			}},
		{"min.insync.replicas above the replication factor", map[string]string{"KAFKA_MIN_INSYNC_REPLICAS": "2"},
			[]string{"KAFKA_MIN_INSYNC_REPLICAS 2: above the replication factor 1"}, nil},
		{"bad topic settings", map[string]string{"KAFKA_TOPIC_REPLICATION_FACTOR": "0", "KAFKA_MIN_INSYNC_REPLICAS": "x",
			"KAFKA_TOPIC_RETENTION": "7d", "KAFKA_DLQ_RETENTION": "-1h"},
			[]string{"KAFKA_TOPIC_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TOPIC_RETENTION", "KAFKA_DLQ_RETENTION"}, nil},
		{"consumer settings", map[string]string{"CONSUMER_UNKNOWN_VERSION_WAIT": "1h", "CONSUMER_PARKED_MESSAGES": "500"}, nil,
			func(t *testing.T, c Config) {
				if want := (ConsumerConfig{UnknownVersionWait: time.Hour, ParkedMessages: 500}); c.Consumer != want {
					t.Errorf("consumer %+v, want %+v", c.Consumer, want)
				}
			}},
		{"bad consumer settings", map[string]string{"CONSUMER_UNKNOWN_VERSION_WAIT": "-5m", "CONSUMER_PARKED_MESSAGES": "0"},
			[]string{"CONSUMER_UNKNOWN_VERSION_WAIT", "CONSUMER_PARKED_MESSAGES"}, nil},
		{"overrides", map[string]string{"HTTP_ADDR": "127.0.0.1:9999", "KAFKA_BROKERS": "k1:9092, k2:9092", "DB_MAX_CONNS": "4", "LOG_LEVEL": "debug"}, nil,
			func(t *testing.T, c Config) {
				if c.HTTPAddr != "127.0.0.1:9999" || len(c.Brokers) != 2 || c.Brokers[1] != "k2:9092" || c.DBMaxConns != 4 || c.LogLevel != slog.LevelDebug {
					t.Errorf("%+v", c)
				}
			}},
		{"every problem at once",
			map[string]string{"DATABASE_URL": "mysql://x", "DB_MAX_CONNS": "lots", "KAFKA_BROKERS": " , ", "LOG_LEVEL": "loud", "OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger"},
			[]string{"DATABASE_URL", "DB_MAX_CONNS", "KAFKA_BROKERS", "LOG_LEVEL", "OTEL_EXPORTER_OTLP_ENDPOINT"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(func(k string) string { return tt.env[k] }, "payment", ":8082")
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

func TestConfigLogHidesThePassword(t *testing.T) {
	c, err := ParseConfig(func(k string) string {
		if k == "DATABASE_URL" {
			return "postgres://order_svc:hunter2@db:5432/sagashop"
		}
		return ""
	}, "order", ":8081")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("password logged: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "order_svc") {
		t.Fatalf("user missing: %s", buf.String())
	}
	for _, want := range []string{`"kafka_topic_replication_factor":1`, `"kafka_dlq_retention":"720h0m0s"`, `"kafka_topic_retention":"broker default"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("config log lacks %s: %s", want, buf.String())
		}
	}
}

// A service creates its dead-letter topic with the dead-letter retention,
// and reports, without changing them, topics that exist with other settings.
func TestEnsureTopicsCreatesTheDeadLetterTopicWithItsRetention(t *testing.T) {
	brokers := testenv.Kafka(t)
	service := testenv.Name("platform")
	cfg, err := ParseConfig(func(k string) string {
		return map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "KAFKA_DLQ_RETENTION": "1000h"}[k]
	}, service, ":0")
	if err != nil {
		t.Fatal(err)
	}
	dlq := events.DeadLetterTopic(service)
	t.Cleanup(func() { _ = broker.DeleteTopics(context.Background(), brokers, dlq) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if err := ensureTopics(ctx, cfg, slog.New(slog.NewJSONHandler(&buf, nil))); err != nil {
		t.Fatal(err)
	}
	var diffs []string
	testenv.WaitFor(t, 10*time.Second, "the dead-letter topic's settings readable", func() bool {
		diffs, err = broker.CheckTopics(ctx, brokers, broker.TopicSpec{Name: dlq, ReplicationFactor: 1,
			Config: map[string]string{"retention.ms": "3600000000"}})
		return err == nil && len(diffs) == 0
	})

	// Now it exists: a second start with another retention leaves it and says so.
	cfg.Topics.DeadLetterRetention = time.Hour
	buf.Reset()
	if err := ensureTopics(ctx, cfg, slog.New(slog.NewJSONHandler(&buf, nil))); err != nil {
		t.Fatal(err)
	}
	if want := dlq + `: retention.ms=3600000000, want 3600000`; !strings.Contains(buf.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, buf.String())
	}
}
