// Package platform is the process scaffolding all five services run on, so
// each service's run function only adds what is its own (migrations, routes,
// event handlers). It reads the standard environment variables, sets up the
// logger, tracing, the database pool and migrations, the topics, the outbox
// relay, the idempotent consumer and the HTTP server, runs them together and
// stops them together: on SIGINT/SIGTERM the HTTP server drains, the consumer
// finishes or abandons (and so later retries) the message in hand, the relay
// stops between batches, and pending spans are flushed. The HTTP server
// listens before anything else: a service started while its database or
// Kafka is down waits for them, alive and not ready (see Start). Every
// service also gets the operator's endpoints of its outbox dead letters
// (/admin/outbox, pkg/outbox).
package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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
	Topics      TopicConfig
	Consumer    ConsumerConfig
	Trace       telemetry.TraceConfig
	LogLevel    slog.Level // LOG_LEVEL: debug, info, warn, error
}

// ConsumerConfig is what a service's consumer takes from the environment;
// zero values mean pkg/consumer's defaults.
type ConsumerConfig struct {
	// UnknownVersionWait (CONSUMER_UNKNOWN_VERSION_WAIT, Go duration,
	// default 15m) is how long an event of a schema version newer than this
	// build knows is retried (a rolling deploy: the producer is already
	// upgraded) before it is dead-lettered with reason unknown_version.
	UnknownVersionWait time.Duration
	// ParkedMessages (CONSUMER_PARKED_MESSAGES, default 10000) is the most
	// messages a failing partition's lane holds before the consumer waits.
	ParkedMessages int
}

func parseConsumerConfig(getenv func(string) string) (ConsumerConfig, []error) {
	var c ConsumerConfig
	var problems []error
	if v := getenv("CONSUMER_UNKNOWN_VERSION_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Errorf("CONSUMER_UNKNOWN_VERSION_WAIT %q: want a positive Go duration (15m)", v))
		}
		c.UnknownVersionWait = d
	}
	if v := getenv("CONSUMER_PARKED_MESSAGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			problems = append(problems, fmt.Errorf("CONSUMER_PARKED_MESSAGES %q: want an integer >= 1", v))
		}
		c.ParkedMessages = n
	}
	return c, problems
}

// TopicConfig is how a service creates the topics it needs (when they do not
// exist yet). The defaults fit the single local broker; a cluster sets a
// replication factor of 3 and min.insync.replicas 2, so that a write
// acknowledged by all in-sync replicas survives the loss of a broker.
type TopicConfig struct {
	ReplicationFactor int           // KAFKA_TOPIC_REPLICATION_FACTOR, default 1
	MinInsyncReplicas int           // KAFKA_MIN_INSYNC_REPLICAS, 0 = the broker's default
	Retention         time.Duration // KAFKA_TOPIC_RETENTION (Go duration) of event topics, 0 = the broker's default
	// DeadLetterRetention is the retention of the service's dead-letter
	// topic (KAFKA_DLQ_RETENTION, Go duration or "infinite"; default 30
	// days, 720h): long, since a dead letter waits for a person. Negative
	// means forever.
	DeadLetterRetention time.Duration
}

// defaultDLQRetention is KAFKA_DLQ_RETENTION's default: a month gives an
// operator time to notice (the dead-letter metrics alert) and replay.
const defaultDLQRetention = 30 * 24 * time.Hour

// EventTopic is the spec of an event topic.
func (c TopicConfig) EventTopic(name string) broker.TopicSpec {
	return c.spec(name, c.Retention)
}

// DeadLetterTopic is the spec of a dead-letter topic: DeadLetterRetention.
func (c TopicConfig) DeadLetterTopic(name string) broker.TopicSpec {
	return c.spec(name, c.DeadLetterRetention)
}

func (c TopicConfig) spec(name string, retention time.Duration) broker.TopicSpec {
	s := broker.TopicSpec{Name: name, Partitions: events.Partitions, ReplicationFactor: c.ReplicationFactor, Config: map[string]string{}}
	switch {
	case retention < 0:
		s.Config["retention.ms"] = "-1"
	case retention > 0:
		s.Config["retention.ms"] = strconv.FormatInt(retention.Milliseconds(), 10)
	}
	if c.MinInsyncReplicas > 0 {
		s.Config["min.insync.replicas"] = strconv.Itoa(c.MinInsyncReplicas)
	}
	return s
}

func parseTopicConfig(getenv func(string) string) (TopicConfig, []error) {
	var problems []error
	c := TopicConfig{ReplicationFactor: 1, DeadLetterRetention: defaultDLQRetention}
	if v := getenv("KAFKA_TOPIC_REPLICATION_FACTOR"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 32767 {
			problems = append(problems, fmt.Errorf("KAFKA_TOPIC_REPLICATION_FACTOR %q: want an integer >= 1", v))
		}
		c.ReplicationFactor = n
	}
	if v := getenv("KAFKA_MIN_INSYNC_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 1:
			problems = append(problems, fmt.Errorf("KAFKA_MIN_INSYNC_REPLICAS %q: want an integer >= 1", v))
		case n > c.ReplicationFactor:
			problems = append(problems, fmt.Errorf("KAFKA_MIN_INSYNC_REPLICAS %d: above the replication factor %d, every write would fail", n, c.ReplicationFactor))
		}
		c.MinInsyncReplicas = n
	}
	if v := getenv("KAFKA_TOPIC_RETENTION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond {
			problems = append(problems, fmt.Errorf("KAFKA_TOPIC_RETENTION %q: want a positive Go duration (168h)", v))
		}
		c.Retention = d
	}
	if v := getenv("KAFKA_DLQ_RETENTION"); v == "infinite" {
		c.DeadLetterRetention = -1
	} else if v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond {
			problems = append(problems, fmt.Errorf("KAFKA_DLQ_RETENTION %q: want a positive Go duration (720h) or infinite", v))
		}
		c.DeadLetterRetention = d
	}
	return c, problems
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
	var topicProblems []error
	c.Topics, topicProblems = parseTopicConfig(getenv)
	problems = append(problems, topicProblems...)
	var consumerProblems []error
	c.Consumer, consumerProblems = parseConsumerConfig(getenv)
	problems = append(problems, consumerProblems...)
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
		slog.Int("kafka_topic_replication_factor", c.Topics.ReplicationFactor),
		slog.Int("kafka_min_insync_replicas", c.Topics.MinInsyncReplicas),
		slog.String("kafka_topic_retention", retention(c.Topics.Retention)),
		slog.String("kafka_dlq_retention", retention(c.Topics.DeadLetterRetention)),
		slog.Duration("consumer_unknown_version_wait", c.Consumer.UnknownVersionWait),
		slog.Int("consumer_parked_messages", c.Consumer.ParkedMessages),
		slog.String("otel_endpoint", c.Trace.Endpoint),
		slog.Bool("otel_disabled", c.Trace.Disabled),
		slog.String("otel_traces_sampler", c.Trace.Sampler),
		slog.Float64("otel_traces_sampler_arg", c.Trace.SamplerArg),
		slog.String("log_level", c.LogLevel.String()),
	)
}

func retention(d time.Duration) string {
	switch {
	case d < 0:
		return "infinite"
	case d == 0:
		return "broker default"
	}
	return d.String()
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
	// The HTTP server, listening from the start: while Start waits for the
	// database and Kafka it answers /livez and, with 503, /readyz; Run puts
	// the service's router in its place.
	srv     *http.Server
	serving chan error // Serve's end
	handler atomic.Pointer[http.Handler]
	waiting atomic.Pointer[string] // what Start waits for
}

// Start sets up everything the service's use cases need and applies its
// migrations, the migrations/ folder of embedded (see database.Migrate).
// It listens on HTTP_ADDR first, then waits as long as it takes for the
// database and then Kafka to answer, logging each attempt at WARN with what
// it waits for, meanwhile answering /livez with 200 and /readyz with 503: an
// orchestrator sees a process alive and not ready, rather than one that
// crash-loops until its dependencies are up. It fails on what waiting does
// not fix (a migration that fails, a topic Kafka refuses to create), and
// with an error wrapping ctx's when ctx ends while it waits (SIGTERM), after
// closing what it opened. Call Close when done.
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
	if err := p.listen(); err != nil {
		p.Close()
		return nil, err
	}
	p.await("database")
	err = waitFor(ctx, logger, "database", database.Unavailable, func() error {
		pool, err := database.Open(ctx, cfg.DatabaseURL, cfg.DBMaxConns, tp)
		if err != nil {
			return err
		}
		if err := Migrate(ctx, pool, embedded, logger); err != nil {
			pool.Close()
			return err
		}
		p.Pool = pool
		return nil
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	p.await("kafka")
	err = waitFor(ctx, logger, "kafka", broker.Unreachable, func() error { return ensureTopics(ctx, cfg, logger) })
	if err != nil {
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

// Waiting for a dependency: the first retry after startBackoff, doubling to
// maxStartBackoff, so a dependency that comes back is seen within seconds and
// one that stays away costs a log line every few seconds.
const (
	startBackoff    = 500 * time.Millisecond
	maxStartBackoff = 5 * time.Second
)

// waitFor runs try until it succeeds, retrying while transient says its
// error is one that waiting may cure, each time logging at WARN that it waits
// for what. It returns try's first other error, or ctx's when ctx ends.
func waitFor(ctx context.Context, logger *slog.Logger, what string, transient func(error) bool, try func() error) error {
	d := startBackoff
	for {
		err := try()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped while waiting for %s: %w", what, ctx.Err())
		}
		if !transient(err) {
			return err
		}
		logger.WarnContext(ctx, "waiting for "+what, "waiting_for", what, telemetry.Err(err), "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("stopped while waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
		d = min(2*d, maxStartBackoff)
	}
}

// listen starts the HTTP server on HTTP_ADDR with the handler of a service
// still starting, so a port in use fails at once and probes get an answer
// from the first moment.
func (p *Platform) listen() error {
	ln, err := net.Listen("tcp", p.Config.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http server %s: %w", p.Config.HTTPAddr, err)
	}
	starting := http.Handler(http.HandlerFunc(p.serveStarting))
	p.handler.Store(&starting)
	p.srv = web.NewServer(p.Config.HTTPAddr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*p.handler.Load()).ServeHTTP(w, r)
	}))
	p.serving = make(chan error, 1)
	p.Logger.Info("http server listening", "addr", ln.Addr().String())
	go func() {
		err := p.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		p.serving <- err
	}()
	return nil
}

func (p *Platform) await(what string) { p.waiting.Store(&what) }

// serveStarting answers while Start waits: alive, not ready, nothing else.
func (p *Platform) serveStarting(w http.ResponseWriter, r *http.Request) {
	what := "startup"
	if s := p.waiting.Load(); s != nil {
		what = *s
	}
	if r.URL.Path == "/livez" {
		web.Encode(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	w.Header().Set("Retry-After", strconv.Itoa(web.RetryAfterSeconds))
	if r.URL.Path == "/readyz" {
		web.Encode(w, http.StatusServiceUnavailable, map[string]any{"status": "starting", "waiting_for": what})
		return
	}
	web.WriteProblem(w, web.Problem{Status: http.StatusServiceUnavailable, Title: "service starting",
		Detail: "the service is waiting for its " + what + "; retry shortly"})
}

// serve runs the HTTP server Start listens with until ctx ends, then shuts
// it down, giving in-flight requests up to 10 s to finish.
func (p *Platform) serve(ctx context.Context) error {
	select {
	case err := <-p.serving:
		if err != nil {
			return fmt.Errorf("http server %s: %w", p.Config.HTTPAddr, err)
		}
		return nil
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// ensureTopics creates the topics the service needs, every event topic and
// its own dead-letter topic, as cfg.Topics says, and warns about each way
// the topics that existed already differ from that: it does not change them
// (see broker.CheckTopics).
func ensureTopics(ctx context.Context, cfg Config, logger *slog.Logger) error {
	var specs []broker.TopicSpec
	for _, t := range events.Topics() {
		specs = append(specs, cfg.Topics.EventTopic(t))
	}
	specs = append(specs, cfg.Topics.DeadLetterTopic(events.DeadLetterTopic(cfg.Service)))
	existing, err := broker.CreateTopics(ctx, cfg.Brokers, specs...)
	if err != nil {
		return err
	}
	var old []broker.TopicSpec
	for _, s := range specs {
		if slices.Contains(existing, s.Name) {
			old = append(old, s)
		}
	}
	diffs, err := broker.CheckTopics(ctx, cfg.Brokers, old...)
	if err != nil {
		logger.WarnContext(ctx, "existing topics not checked against the configuration", telemetry.Err(err))
	}
	for _, d := range diffs {
		logger.WarnContext(ctx, "existing topic differs from the configuration; left as it is", "difference", d)
	}
	return nil
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
	if p.srv != nil {
		_ = p.srv.Close()
	}
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
	h := web.Handler(router, routerCfg)
	p.handler.Store(&h)

	relay := outbox.NewRelay(outbox.RelayConfig{
		Pool:           p.Pool,
		Publisher:      p.Writer,
		Logger:         p.Logger,
		TracerProvider: p.TracerProvider,
		Registerer:     p.Registry,
	})
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.serve(ctx) })
	g.Go(func() error { return relay.Run(ctx) })
	if len(parts.Handlers) > 0 {
		cons, err := consumer.New(consumer.Config{
			Brokers:    p.Config.Brokers,
			Group:      p.Config.Service,
			Handlers:   parts.Handlers,
			Pool:       p.Pool,
			DeadLetter: p.Writer,
			// Start created it already; the consumer creates it again, the
			// same way, should it be deleted while the service runs.
			DeadLetterTopic:    p.Config.Topics.DeadLetterTopic(events.DeadLetterTopic(p.Config.Service)),
			Logger:             p.Logger,
			TracerProvider:     p.TracerProvider,
			Registerer:         p.Registry,
			UnknownVersionWait: p.Config.Consumer.UnknownVersionWait,
			ParkedMessages:     p.Config.Consumer.ParkedMessages,
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
