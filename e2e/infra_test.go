package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/sagashop/sagashop/pkg/testenv"
)

// infra is the infrastructure the system under test runs on: PostgreSQL,
// Kafka and Jaeger. The suite gets it one of two ways (SAGASHOP_E2E_INFRA):
//
//   - local: the local stack of `make infra-up` (PostgreSQL, Jaeger) plus a
//     private Kafka broker for the run;
//   - containers: PostgreSQL, Kafka and Jaeger containers started with
//     testcontainers-go, from the images POSTGRES_IMAGE, KAFKA_IMAGE and
//     JAEGER_IMAGE (the official ones by default);
//   - auto (the default): containers when a container engine answers,
//     local otherwise.
type infra interface {
	Name() string
	// AdminURL is a superuser URL for database db.
	AdminURL(db string) string
	// ServiceURL is the URL a service's role uses for database db.
	ServiceURL(role, db string) string
	Brokers() []string
	OTLPEndpoint() string
	JaegerQueryURL() string
}

// newInfra picks and starts the infrastructure; it is torn down when t ends.
// Before testcontainers-go is asked anything, the container engine must
// answer (readyEngine, engine_test.go).
func newInfra(t *testing.T) infra {
	t.Helper()
	mode := os.Getenv("SAGASHOP_E2E_INFRA")
	switch mode {
	case "", "auto":
		host, err := engineEndpoint()
		if err == nil {
			err = pingEngine(host, 10*time.Second)
		}
		if err != nil {
			t.Logf("e2e infrastructure: local stack (no container engine: %v)", err)
			return newLocalInfra(t)
		}
		readyEngine(t, host)
		return newContainerInfra(t)
	case "local":
		return newLocalInfra(t)
	case "containers":
		host, err := engineEndpoint()
		if err != nil {
			t.Fatalf("SAGASHOP_E2E_INFRA=containers but there is no container engine (%v): start one and set DOCKER_HOST (make containers-e2e does)", err)
		}
		readyEngine(t, host)
		return newContainerInfra(t)
	default:
		t.Fatalf("SAGASHOP_E2E_INFRA=%q: want auto, local or containers", mode)
		return nil
	}
}

type localInfra struct{ kafka *testenv.PrivateKafka }

func newLocalInfra(t *testing.T) *localInfra {
	l := &localInfra{kafka: testenv.StartPrivateKafka(t)}
	t.Logf("e2e infrastructure: local PostgreSQL and Jaeger, private Kafka broker on %v", l.kafka.Brokers())
	return l
}

func (l *localInfra) Name() string { return "local" }
func (l *localInfra) AdminURL(db string) string {
	return withDatabase(testenv.DatabaseURL(), db, "")
}
func (l *localInfra) ServiceURL(role, db string) string {
	return withDatabase(testenv.DatabaseURL(), db, role)
}
func (l *localInfra) Brokers() []string { return l.kafka.Brokers() }
func (l *localInfra) OTLPEndpoint() string {
	return envOr("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
}
func (l *localInfra) JaegerQueryURL() string {
	return envOr("JAEGER_QUERY_URL", "http://127.0.0.1:16686")
}

type containerInfra struct {
	pgURL   string
	brokers []string
	otlp    string
	query   string
}

// newContainerInfra starts the three containers in parallel.
func newContainerInfra(t *testing.T) *containerInfra {
	t.Helper()
	ctx := context.Background()
	c := &containerInfra{}
	// The suite removes its containers itself; the reaper (Ryuk) would need
	// an image pulled from a registry, which not every engine can reach.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		t.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	images := map[string]string{
		"postgres": envOr("POSTGRES_IMAGE", "postgres:15"),
		"kafka":    envOr("KAFKA_IMAGE", "apache/kafka:"+kafkaVersion(t, testenv.RepoRoot(t))),
		"jaeger":   envOr("JAEGER_IMAGE", "jaegertracing/jaeger:"+jaegerRelease),
	}
	t.Logf("e2e infrastructure: containers (%s, %s, %s) via testcontainers-go", images["postgres"], images["kafka"], images["jaeger"])

	// Kafka advertises the address clients must use, so its host port is
	// chosen here and bound explicitly.
	kafkaPort := testenv.FreePort(t)
	reqs := map[string]testcontainers.ContainerRequest{
		"postgres": {
			Image:        images["postgres"],
			ExposedPorts: []string{"5432/tcp"},
			Env:          map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "sagashop"},
			WaitingFor:   wait.ForListeningPort("5432/tcp").WithStartupTimeout(90 * time.Second),
		},
		"kafka": {
			Image:        images["kafka"],
			ExposedPorts: []string{"9092/tcp"},
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.PortBindings = network.PortMap{network.MustParsePort("9092/tcp"): {
					{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(kafkaPort)},
				}}
			},
			// The settings of every Sagashop broker (tools/kafka/broker.properties),
			// placed in this container: clients on the host reach it through the
			// published port it advertises.
			Env: testenv.KafkaEnv(t, map[string]string{
				"KAFKA_LISTENERS":                      "PLAINTEXT://:9092,CONTROLLER://:9093",
				"KAFKA_ADVERTISED_LISTENERS":           "PLAINTEXT://127.0.0.1:" + strconv.Itoa(kafkaPort),
				"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
				"KAFKA_CONTROLLER_QUORUM_VOTERS":       "1@localhost:9093",
			}),
			WaitingFor: wait.ForListeningPort("9092/tcp").WithStartupTimeout(120 * time.Second),
		},
		"jaeger": {
			Image:        images["jaeger"],
			ExposedPorts: []string{"4317/tcp", "16686/tcp"},
			WaitingFor:   wait.ForListeningPort("16686/tcp").WithStartupTimeout(60 * time.Second),
		},
	}
	type started struct {
		name string
		c    testcontainers.Container
		err  error
	}
	results := make(chan started, len(reqs))
	for name, req := range reqs {
		go func() {
			ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
			results <- started{name, ctr, err}
		}()
	}
	containers := map[string]testcontainers.Container{}
	var errs []string
	for range reqs {
		r := <-results
		if r.c != nil {
			containers[r.name] = r.c
			ctr := r.c
			t.Cleanup(func() {
				timeout := 5 * time.Second
				if err := ctr.Stop(context.Background(), &timeout); err != nil {
					t.Logf("stop container: %v", err)
				}
				if err := ctr.Terminate(context.Background()); err != nil {
					t.Logf("remove container: %v", err)
				}
			})
		}
		if r.err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", r.name, r.err))
		}
	}
	if len(errs) > 0 {
		t.Fatalf("start containers: %s", strings.Join(errs, "; "))
	}
	endpoint := func(name, port string) string {
		h, err := containers[name].Host(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p, err := containers[name].MappedPort(ctx, port)
		if err != nil {
			t.Fatal(err)
		}
		return h + ":" + p.Port()
	}
	c.pgURL = "postgres://postgres@" + endpoint("postgres", "5432/tcp") + "/sagashop?sslmode=disable"
	c.brokers = []string{"127.0.0.1:" + strconv.Itoa(kafkaPort)}
	c.otlp = "http://" + endpoint("jaeger", "4317/tcp")
	c.query = "http://" + endpoint("jaeger", "16686/tcp")
	t.Logf("containers: postgres %s, kafka %v, jaeger OTLP %s, query %s", c.pgURL, c.brokers, c.otlp, c.query)
	return c
}

func (c *containerInfra) Name() string                      { return "containers" }
func (c *containerInfra) AdminURL(db string) string         { return withDatabase(c.pgURL, db, "") }
func (c *containerInfra) ServiceURL(role, db string) string { return withDatabase(c.pgURL, db, role) }
func (c *containerInfra) Brokers() []string                 { return c.brokers }
func (c *containerInfra) OTLPEndpoint() string              { return c.otlp }
func (c *containerInfra) JaegerQueryURL() string            { return c.query }

// withDatabase returns base pointing at database db, as user when set.
func withDatabase(base, db, user string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	if db != "" {
		u.Path = "/" + db
	}
	if user != "" {
		u.User = url.User(user)
	}
	return u.String()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
