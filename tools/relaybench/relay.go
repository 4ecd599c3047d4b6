package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/outbox"
)

// Relay kinds.
const (
	kindSagashop  = "sagashop"
	kindWatermill = "watermill"
)

// relayAppName is the application_name of the relay's connections, by which
// the parent finds their PostgreSQL backends.
const relayAppName = "relaybench-relay"

// relaySettings are the knobs of both relays; the parent passes them to the
// child as flags.
type relaySettings struct {
	// Sagashop's relay: zero means its default.
	SagashopBatch int           `json:"sagashop_batch_size"`
	SagashopPoll  time.Duration `json:"-"`
	// Watermill's forwarder.
	WatermillPoll    time.Duration `json:"-"`
	WatermillBatch   int           `json:"watermill_subscribe_batch_size"`
	WatermillAcks    string        `json:"watermill_required_acks"`
	WatermillVersion string        `json:"watermill_sarama_version"`
}

func (s *relaySettings) register(fs *flag.FlagSet) {
	fs.IntVar(&s.SagashopBatch, "sagashop-batch", 0, "Sagashop relay BatchSize (0: its default)")
	fs.DurationVar(&s.SagashopPoll, "sagashop-poll", 0, "Sagashop relay PollInterval (0: its default)")
	fs.DurationVar(&s.WatermillPoll, "watermill-poll", time.Millisecond, "Watermill SQL subscriber PollInterval")
	fs.IntVar(&s.WatermillBatch, "watermill-batch", 1000, "Watermill PostgreSQL schema adapter SubscribeBatchSize")
	fs.StringVar(&s.WatermillAcks, "watermill-acks", "all", "Watermill Kafka publisher's required acks: all or leader")
	fs.StringVar(&s.WatermillVersion, "watermill-kafka-version", "1.0.0", "Kafka protocol version the Watermill (sarama) publisher speaks (Watermill's default)")
}

func (s relaySettings) args() []string {
	return []string{
		"-sagashop-batch", fmt.Sprint(s.SagashopBatch),
		"-sagashop-poll", s.SagashopPoll.String(),
		"-watermill-poll", s.WatermillPoll.String(),
		"-watermill-batch", fmt.Sprint(s.WatermillBatch),
		"-watermill-acks", s.WatermillAcks,
		"-watermill-kafka-version", s.WatermillVersion,
	}
}

// runRelay is the child process: it sets up one relay, writes "ready" to
// stdout, starts relaying when a line arrives on stdin and stops when stdin
// closes or ctx ends, so that the parent reads the CPU time of the relay
// alone, without the start-up of the process.
func runRelay(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	kind := fs.String("kind", "", "sagashop or watermill")
	dbURL := fs.String("db", "", "database URL; its search_path names the relay's schema")
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated")
	topic := fs.String("topic", "", "Watermill's forwarder topic (its SQL table); Sagashop reads the topic from each row")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the relaying to this file")
	var s relaySettings
	s.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dbURL == "" || *brokers == "" {
		return errors.New("relay: -db and -brokers are required")
	}
	cfg, err := pgxpool.ParseConfig(*dbURL)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = relayAppName
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open pool: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}

	var start func(context.Context) error
	switch *kind {
	case kindSagashop:
		start, err = sagashopRelay(pool, strings.Split(*brokers, ","), s)
	case kindWatermill:
		start, err = watermillRelay(pool, strings.Split(*brokers, ","), *topic, s)
	default:
		err = fmt.Errorf("relay: unknown -kind %q", *kind)
	}
	if err != nil {
		return err
	}

	fmt.Fprintln(stdout, "ready")
	in := bufio.NewScanner(stdin)
	if !in.Scan() {
		return nil
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for in.Scan() {
		}
		cancel()
	}()
	return start(ctx)
}

// sagashopRelay returns the start of Sagashop's relay as the services run
// it, without tracing and metrics (as Watermill's side has none either).
func sagashopRelay(pool *pgxpool.Pool, brokers []string, s relaySettings) (func(context.Context) error, error) {
	w := broker.NewWriter(brokers)
	r := outbox.NewRelay(outbox.RelayConfig{
		Pool:         pool,
		Publisher:    w,
		BatchSize:    s.SagashopBatch,
		PollInterval: s.SagashopPoll,
	})
	return func(ctx context.Context) error {
		defer w.Close()
		return r.Run(ctx)
	}, nil
}

// watermillRelay returns the start of Watermill's forwarder: the SQL
// subscriber on the forwarder topic's table in the pool's schema, publishing
// with Watermill's Kafka publisher, partitioned by the event's subject.
func watermillRelay(pool *pgxpool.Pool, brokers []string, topic string, s relaySettings) (func(context.Context) error, error) {
	logger := watermill.NopLogger{}
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{
		SchemaAdapter:  watermillSchema(s),
		OffsetsAdapter: wmsql.DefaultPostgreSQLOffsetsAdapter{},
		PollInterval:   s.WatermillPoll,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("watermill sql subscriber: %w", err)
	}
	sc, err := saramaConfig(s)
	if err != nil {
		return nil, err
	}
	pub, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{
		Brokers: brokers,
		Marshaler: wmkafka.NewWithPartitioningMarshaler(func(_ string, m *message.Message) (string, error) {
			return m.Metadata.Get(events.HeaderSubject), nil
		}),
		OverwriteSaramaConfig: sc,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("watermill kafka publisher: %w", err)
	}
	fwd, err := forwarder.NewForwarder(sub, pub, logger, forwarder.Config{
		ForwarderTopic: topic,
		CloseTimeout:   5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("watermill forwarder: %w", err)
	}
	return func(ctx context.Context) error {
		defer pub.Close()
		err := fwd.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}, nil
}

// watermillSchema is the schema adapter both sides of Watermill use.
func watermillSchema(s relaySettings) wmsql.DefaultPostgreSQLSchema {
	return wmsql.DefaultPostgreSQLSchema{SubscribeBatchSize: s.WatermillBatch}
}

// saramaConfig is Watermill's default sync publisher config with the acks
// and protocol version of s.
func saramaConfig(s relaySettings) (*sarama.Config, error) {
	c := wmkafka.DefaultSaramaSyncPublisherConfig()
	switch s.WatermillAcks {
	case "all":
		c.Producer.RequiredAcks = sarama.WaitForAll
	case "leader":
		c.Producer.RequiredAcks = sarama.WaitForLocal
	default:
		return nil, fmt.Errorf("watermill acks %q: want all or leader", s.WatermillAcks)
	}
	v, err := sarama.ParseKafkaVersion(s.WatermillVersion)
	if err != nil {
		return nil, fmt.Errorf("watermill kafka version: %w", err)
	}
	c.Version = v
	c.ClientID = "relaybench"
	return c, nil
}
