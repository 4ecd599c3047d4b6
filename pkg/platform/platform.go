// Package platform is the process scaffolding all five services run on, so
// each service's run function only adds what is its own (migrations, routes,
// event handlers). It reads the standard environment variables, sets up the
// logger, tracing, the database pool and migrations, the topics, the outbox
// relay, the idempotent consumer and the HTTP server, runs them together and
// stops them together: on SIGINT/SIGTERM the HTTP server drains, the consumer
// finishes or abandons (and so later retries) the message in hand, the relay
// stops between batches, and pending spans are flushed.
package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/database"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// Config holds the settings every service reads. Service-specific settings
// live in the service's own config.go.
type Config struct {
	Service     string
	HTTPAddr    string // HTTP_ADDR
	DatabaseURL string // DATABASE_URL
	DBMaxConns  int32  // DB_MAX_CONNS
	Brokers     []string
	Trace       telemetry.TraceConfig
	LogLevel    slog.Level // LOG_LEVEL: debug, info, warn, error
}

// ParseConfig reads the shared variables through getenv. Defaults fit the
// local stack (make infra-up): the service's own role on 127.0.0.1:5432,
// Kafka on 127.0.0.1:9092, Jaeger's OTLP on 127.0.0.1:4317. All problems are
// reported together.
func ParseConfig(getenv func(string) string, service, defaultHTTPAddr string) (Config, error) {
	var problems []error
	c := Config{
		Service:     service,
		HTTPAddr:    or(getenv("HTTP_ADDR"), defaultHTTPAddr),
		DatabaseURL: or(getenv("DATABASE_URL"), "postgres://"+service+"_svc@127.0.0.1:5432/sagashop?sslmode=disable"),
		DBMaxConns:  10,
	}
	if _, err := url.Parse(c.DatabaseURL); err != nil || !strings.HasPrefix(c.DatabaseURL, "postgres") {
		problems = append(problems, errors.New("DATABASE_URL: want postgres://user@host:port/db"))
	}
	if v := getenv("DB_MAX_CONNS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 2 {
			problems = append(problems, fmt.Errorf("DB_MAX_CONNS %q: want an integer >= 2", v))
		}
		c.DBMaxConns = int32(n)
	}
	for _, b := range strings.Split(or(getenv("KAFKA_BROKERS"), "127.0.0.1:9092"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	if len(c.Brokers) == 0 {
		problems = append(problems, errors.New("KAFKA_BROKERS: empty"))
	}
	if err := c.LogLevel.UnmarshalText([]byte(or(getenv("LOG_LEVEL"), "info"))); err != nil {
		problems = append(problems, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	tc, err := telemetry.ParseTraceConfig(getenv, service)
	if err != nil {
		problems = append(problems, err)
	}
	c.Trace = tc
	return c, errors.Join(problems...)
}

// LogValue shows the configuration without secrets: the database URL
// without its password.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("database_url", RedactURL(c.DatabaseURL)),
		slog.Int("db_max_conns", int(c.DBMaxConns)),
		slog.String("kafka_brokers", strings.Join(c.Brokers, ",")),
		slog.String("otel_endpoint", c.Trace.Endpoint),
		slog.Bool("otel_disabled", c.Trace.Disabled),
		slog.String("otel_traces_sampler", c.Trace.Sampler),
		slog.Float64("otel_traces_sampler_arg", c.Trace.SamplerArg),
		slog.String("log_level", c.LogLevel.String()),
	)
}

// RedactURL returns u with any password replaced by "xxxxx".
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable)"
	}
	return p.Redacted()
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Platform is a started service process: its logger, tracer provider,
// database pool (migrated), metrics registry and Kafka writer.
type Platform struct {
	Config         Config
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Pool           *pgxpool.Pool
	Registry       *prometheus.Registry
	Writer         *kafka.Writer

	shutdownTracing func(context.Context) error
}

// Start sets up everything the service's use cases need and applies its
// migrations, the migrations/ folder of embedded (see database.Migrate).
// Call Close when done.
func Start(ctx context.Context, cfg Config, stdout io.Writer, embedded fs.FS) (*Platform, error) {
	logger := telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	logger.Info("starting", "config", cfg)
	// The OpenTelemetry SDK reports export failures only through this global
	// hook; route them to our log instead of stderr.
	otel.SetErrorHandler(telemetry.ErrorLogger{Logger: logger})
	tp, shutdownTracing, err := telemetry.NewTracerProvider(ctx, cfg.Trace)
	if err != nil {
		return nil, err
	}
	p := &Platform{Config: cfg, Logger: logger, TracerProvider: tp, shutdownTracing: shutdownTracing}
	p.Pool, err = database.Open(ctx, cfg.DatabaseURL, cfg.DBMaxConns, tp)
	if err != nil {
		p.Close()
		return nil, err
	}
	if err := Migrate(ctx, p.Pool, embedded, logger); err != nil {
		p.Close()
		return nil, err
	}
	topics := append(events.Topics(), events.DeadLetterTopic(cfg.Service))
	if err := broker.EnsureTopics(ctx, cfg.Brokers, events.Partitions, topics...); err != nil {
		p.Close()
		return nil, err
	}
	p.Registry = prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := p.Registry.Register(c); err != nil {
			p.Close()
			return nil, fmt.Errorf("register process metrics: %w", err)
		}
	}
	p.Writer = broker.NewWriter(cfg.Brokers)
	return p, nil
}

// Migrate applies the tables every service shares (the outbox, the
// consumer's inbox, the outbox's dead letters; append, never reorder) and
// then the service's own migrations, the migrations/ folder of embedded (see
// database.Migrate).
func Migrate(ctx context.Context, pool *pgxpool.Pool, embedded fs.FS, logger *slog.Logger) error {
	return database.Migrate(ctx, pool, embedded, logger, outbox.Schema, consumer.Schema, outbox.DeadLetterSchema)
}

// Close releases what Start acquired and flushes pending spans.
func (p *Platform) Close() {
	if p.Writer != nil {
		if err := p.Writer.Close(); err != nil {
			p.Logger.Warn("close kafka writer", telemetry.Err(err))
		}
	}
	if p.Pool != nil {
		p.Pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.shutdownTracing(ctx); err != nil {
		p.Logger.Warn("flush traces", telemetry.Err(err))
	}
}

// Parts is what a service adds to the platform.
type Parts struct {
	Routes func(r chi.Router) // the service's HTTP routes
	// Handlers by event type; the consumer reads the topics these types
	// travel on (events.Saga) and skips other types. None: no consumer.
	Handlers map[string]consumer.Handler
	// Workers are the service's own background loops (a sweeper, a
	// watcher), by name. Each runs until ctx ends, returning nil then; an
	// error from one stops the service like an error of the HTTP server.
	Workers map[string]func(ctx context.Context) error
}

// Run serves HTTP, relays the outbox and consumes events until ctx ends or
// one of them fails, then stops all three.
func (p *Platform) Run(ctx context.Context, parts Parts) error {
	routerCfg := web.RouterConfig{
		Service:        p.Config.Service,
		Logger:         p.Logger,
		TracerProvider: p.TracerProvider,
		Registry:       p.Registry,
		Ready: map[string]web.Ready{
			"database": func(ctx context.Context) error { return p.Pool.Ping(ctx) },
			"kafka":    func(ctx context.Context) error { return broker.Ping(ctx, p.Config.Brokers) },
		},
	}
	router, err := web.NewRouter(routerCfg)
	if err != nil {
		return err
	}
	parts.Routes(router)
	outbox.AdminRoutes(p.Pool)(router)
	srv := web.NewServer(p.Config.HTTPAddr, web.Handler(router, routerCfg))

	relay := outbox.NewRelay(outbox.RelayConfig{
		Pool:           p.Pool,
		Publisher:      p.Writer,
		Logger:         p.Logger,
		TracerProvider: p.TracerProvider,
		Registerer:     p.Registry,
	})
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return web.Serve(ctx, srv, p.Logger) })
	g.Go(func() error { return relay.Run(ctx) })
	if len(parts.Handlers) > 0 {
		cons, err := consumer.New(consumer.Config{
			Brokers:        p.Config.Brokers,
			Group:          p.Config.Service,
			Handlers:       parts.Handlers,
			Pool:           p.Pool,
			DeadLetter:     p.Writer,
			Logger:         p.Logger,
			TracerProvider: p.TracerProvider,
			Registerer:     p.Registry,
		})
		if err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		g.Go(func() error { return cons.Run(ctx) })
	}
	for _, name := range slices.Sorted(maps.Keys(parts.Workers)) {
		work := parts.Workers[name]
		g.Go(func() error {
			if err := work(ctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	p.Logger.Info("running", "http_addr", p.Config.HTTPAddr, "handles", slices.Sorted(maps.Keys(parts.Handlers)),
		"workers", slices.Sorted(maps.Keys(parts.Workers)))
	err = g.Wait()
	p.Logger.Info("stopped", telemetry.Err(err))
	return err
}
