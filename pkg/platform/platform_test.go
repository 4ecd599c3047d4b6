package platform

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
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
		}},
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
}
