package e2e

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// TestCompose checks docker-compose.yml against the code, with no container
// engine: every service under services/ is in it, built from the Dockerfile,
// health-checked, started after what it needs, published on the port its
// code defaults to, and given only environment variables its code reads
// (and all of those it must be given). It also pins the image variables and
// their defaults, and the topics kafka-init creates.
func TestCompose(t *testing.T) {
	root := testenv.RepoRoot(t)
	project := loadCompose(t, root, nil)
	names := serviceDirs(t, root)
	if len(names) == 0 {
		t.Fatal("no services found under services/")
	}

	for _, infra := range []string{"postgres", "kafka", "kafka-init", "jaeger", "seed"} {
		if _, ok := project.Services[infra]; !ok {
			t.Errorf("service %q missing from docker-compose.yml", infra)
		}
	}
	for _, infra := range []string{"postgres", "kafka", "jaeger"} {
		if hc := project.Services[infra].HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("%s: no healthcheck", infra)
		}
	}
	for name, s := range project.Services {
		for dep, d := range s.DependsOn {
			target, ok := project.Services[dep]
			if !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
				continue
			}
			if d.Condition == types.ServiceConditionHealthy && (target.HealthCheck == nil || target.HealthCheck.Disable) {
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
	}

	t.Run("postgres", func(t *testing.T) {
		pg := project.Services["postgres"]
		if got := value(pg.Environment, "POSTGRES_DB"); got != "sagashop" {
			t.Errorf("POSTGRES_DB = %q, want sagashop", got)
		}
		mounted := false
		for _, v := range pg.Volumes {
			if v.Type == types.VolumeTypeBind && v.Source == filepath.Join(root, "tools/postgres/init.sql") &&
				strings.HasPrefix(v.Target, "/docker-entrypoint-initdb.d/") {
				mounted = true
			}
		}
		if !mounted {
			t.Error("tools/postgres/init.sql is not mounted into /docker-entrypoint-initdb.d/")
		}
	})

	t.Run("kafka-init", func(t *testing.T) {
		init := project.Services["kafka-init"]
		want := events.Topics()
		for _, name := range names {
			want = append(want, events.DeadLetterTopic(name))
		}
		got := strings.Fields(value(init.Environment, "TOPICS"))
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("kafka-init TOPICS = %v, want %v (pkg/events topics and each service's dead-letter topic)", got, want)
		}
		if got := value(init.Environment, "PARTITIONS"); got != strconv.Itoa(events.Partitions) {
			t.Errorf("kafka-init PARTITIONS = %s, want events.Partitions = %d", got, events.Partitions)
		}
		if init.Image != project.Services["kafka"].Image {
			t.Errorf("kafka-init image %s, want the kafka service's %s (it runs kafka-topics.sh)", init.Image, project.Services["kafka"].Image)
		}
		if d, ok := init.DependsOn["kafka"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Error("kafka-init must wait for kafka to be healthy")
		}
	})

	t.Run("kafka", func(t *testing.T) {
		// The broker's settings are those of every Sagashop broker
		// (tools/kafka/broker.properties, which tools/infra.sh, pkg/testenv
		// and the e2e containers use); compose only places it: listeners,
		// quorum, data folder, heap.
		env := project.Services["kafka"].Environment
		shared := map[string]bool{}
		for k, v := range testenv.KafkaSettings(t) {
			name := testenv.KafkaEnvName(k)
			shared[name] = true
			if got := value(env, name); got != v {
				t.Errorf("%s = %q, want %q (%s in tools/kafka/broker.properties)", name, got, v, k)
			}
		}
		placement := map[string]bool{
			"KAFKA_LISTENERS": true, "KAFKA_ADVERTISED_LISTENERS": true, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": true,
			"KAFKA_CONTROLLER_QUORUM_VOTERS": true, "KAFKA_LOG_DIRS": true, "KAFKA_HEAP_OPTS": true,
		}
		for k := range env {
			if strings.HasPrefix(k, "KAFKA_") && !shared[k] && !placement[k] {
				t.Errorf("%s is a broker setting of compose alone: put it in tools/kafka/broker.properties (compose keeps only %v)", k, keys(placement))
			}
		}
	})

	t.Run("seed", func(t *testing.T) {
		seed := project.Services["seed"]
		for _, dep := range []string{"inventory", "payment"} {
			if d, ok := seed.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("seed must wait for %s to be healthy", dep)
			}
		}
		if !slices.ContainsFunc(names, func(n string) bool { return project.Services[n].Image == seed.Image }) {
			t.Errorf("seed image %s is none of the services' images (it runs their sagashopctl)", seed.Image)
		}
	})

	listeners := value(project.Services["kafka"].Environment, "KAFKA_LISTENERS")
	dockerfileArgs := dockerfileArgs(t, filepath.Join(root, "Dockerfile"))
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			s, ok := project.Services[name]
			if !ok {
				t.Fatalf("service %s (services/%s) missing from docker-compose.yml", name, name)
			}
			reads, defaultAddr := serviceEnv(t, root, name)

			if want := "sagashop/" + name + ":latest"; s.Image != want {
				t.Errorf("image %q, want %q by default", s.Image, want)
			}
			if s.Build == nil {
				t.Fatal("no build section")
			}
			if s.Build.Context != root || (s.Build.Dockerfile != "" && s.Build.Dockerfile != "Dockerfile") {
				t.Errorf("build context %s, Dockerfile %s: want the repository root and its Dockerfile", s.Build.Context, s.Build.Dockerfile)
			}
			if got := value(s.Build.Args, "SERVICE"); got != name {
				t.Errorf("build arg SERVICE = %q, want %q", got, name)
			}
			for arg, def := range dockerfileArgs {
				if got := value(s.Build.Args, arg); got != def {
					t.Errorf("build arg %s = %q by default, want the Dockerfile's default %q", arg, got, def)
				}
			}

			hc := s.HealthCheck
			if hc == nil || hc.Disable || len(hc.Test) < 2 || !slices.Contains(hc.Test, "health") {
				t.Errorf("healthcheck %v, want sagashopctl health", hc)
			}
			wantDeps := map[string]string{
				"postgres":   types.ServiceConditionHealthy,
				"kafka-init": types.ServiceConditionCompletedSuccessfully,
				"jaeger":     types.ServiceConditionHealthy,
			}
			for dep, cond := range wantDeps {
				if got := s.DependsOn[dep].Condition; got != cond {
					t.Errorf("depends_on %s: condition %q, want %q", dep, got, cond)
				}
			}

			// Environment: only what the code reads, everything it must get.
			for k, v := range s.Environment {
				if !reads[k] {
					t.Errorf("environment %s: the code of %s does not read it (it reads %v)", k, name, keys(reads))
				}
				if v == nil {
					t.Errorf("environment %s has no value (it would come from the host)", k)
				}
			}
			for _, k := range []string{"HTTP_ADDR", "DATABASE_URL", "KAFKA_BROKERS", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"} {
				if !reads[k] {
					t.Errorf("the code no longer reads %s; update this test", k)
				}
				if value(s.Environment, k) == "" {
					t.Errorf("environment %s is not set", k)
				}
			}
			if got := value(s.Environment, "OTEL_SERVICE_NAME"); got != name {
				t.Errorf("OTEL_SERVICE_NAME = %q, want %q", got, name)
			}
			db, err := url.Parse(value(s.Environment, "DATABASE_URL"))
			if err != nil || db.User.Username() != name+"_svc" || db.Host != "postgres:5432" || db.Path != "/sagashop" {
				t.Errorf("DATABASE_URL = %s, want postgres://%s_svc@postgres:5432/sagashop", value(s.Environment, "DATABASE_URL"), name)
			}
			for _, b := range strings.Split(value(s.Environment, "KAFKA_BROKERS"), ",") {
				host, port, err := net.SplitHostPort(b)
				if err != nil || host != "kafka" || !strings.Contains(listeners, ":"+port+",") && !strings.HasSuffix(listeners, ":"+port) {
					t.Errorf("KAFKA_BROKERS %s: want kafka:<a port of KAFKA_LISTENERS %s>", b, listeners)
				}
			}
			if got := value(s.Environment, "OTEL_EXPORTER_OTLP_ENDPOINT"); got != "http://jaeger:4317" {
				t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT = %s, want http://jaeger:4317", got)
			}

			// Ports: the container listens on HTTP_ADDR; the host gets the
			// port the code defaults to (the one `make run` uses), on loopback.
			_, listen, err := net.SplitHostPort(value(s.Environment, "HTTP_ADDR"))
			if err != nil {
				t.Fatalf("HTTP_ADDR: %v", err)
			}
			_, defPort, err := net.SplitHostPort(defaultAddr)
			if err != nil {
				t.Fatalf("default HTTP address %q in services/%s: %v", defaultAddr, name, err)
			}
			if len(s.Ports) != 1 {
				t.Fatalf("ports %v, want exactly one", s.Ports)
			}
			p := s.Ports[0]
			if strconv.Itoa(int(p.Target)) != listen || p.Published != defPort || p.HostIP != "127.0.0.1" {
				t.Errorf("port %s:%s:%d, want 127.0.0.1:%s:%s (HTTP_ADDR %s, code default %s)",
					p.HostIP, p.Published, p.Target, defPort, listen, value(s.Environment, "HTTP_ADDR"), defaultAddr)
			}
		})
	}

	// make containers runs the file with tools/containers/compose.podman.yml
	// on top: fixed addresses and /etc/hosts entries instead of podman's DNS.
	// Every container must find every long-running service there.
	t.Run("podman override", func(t *testing.T) {
		p := loadCompose(t, root, nil, filepath.Join(root, "tools/containers/compose.podman.yml"))
		addrs := map[string]string{}
		for name, s := range p.Services {
			if n := s.Networks["default"]; n != nil && n.Ipv4Address != "" {
				addrs[name] = n.Ipv4Address
			} else if name != "kafka-init" && name != "seed" {
				t.Errorf("%s has no fixed address in compose.podman.yml", name)
			}
		}
		for name, s := range p.Services {
			for svc, addr := range addrs {
				if got := s.ExtraHosts[svc]; len(got) != 1 || got[0] != addr {
					t.Errorf("%s: extra_hosts %s = %v, want %s", name, svc, got, addr)
				}
			}
		}
	})

	t.Run("variables", func(t *testing.T) {
		defaults := map[string]string{
			"postgres": "postgres:15",
			"kafka":    "apache/kafka:" + kafkaVersion(t, root),
			"jaeger":   "jaegertracing/jaeger:" + jaegerRelease,
		}
		// The Jaeger of make run and of make containers is the same release.
		for file, want := range map[string]string{
			"tools/jaeger/go.mod":        "github.com/jaegertracing/jaeger " + jaegerModule,
			"tools/containers/common.sh": "JAEGER_LOCAL=localhost/sagashop-jaeger:" + jaegerRelease,
		} {
			if b, err := os.ReadFile(filepath.Join(root, file)); err != nil || !strings.Contains(string(b), want) {
				t.Errorf("%s does not hold %q (%v): one Jaeger everywhere", file, want, err)
			}
		}
		for svc, want := range defaults {
			if got := project.Services[svc].Image; got != want {
				t.Errorf("%s image %s by default, want %s", svc, got, want)
			}
		}
		env := map[string]string{
			"POSTGRES_IMAGE": "localhost/pg", "KAFKA_IMAGE": "localhost/kafka", "JAEGER_IMAGE": "localhost/jaeger",
			"SAGASHOP_IMAGE_PREFIX": "localhost/shop", "SAGASHOP_IMAGE_TAG": "dev",
			"GO_IMAGE": "localhost/go", "RUNTIME_IMAGE": "scratch",
		}
		for i, name := range names {
			env[strings.ToUpper(name)+"_PORT"] = strconv.Itoa(18000 + i)
		}
		p := loadCompose(t, root, env)
		for svc, v := range map[string]string{"postgres": "POSTGRES_IMAGE", "kafka": "KAFKA_IMAGE", "kafka-init": "KAFKA_IMAGE", "jaeger": "JAEGER_IMAGE"} {
			if got := p.Services[svc].Image; got != env[v] {
				t.Errorf("%s image %s with %s=%s", svc, got, v, env[v])
			}
		}
		for i, name := range names {
			s := p.Services[name]
			if want := "localhost/shop/" + name + ":dev"; s.Image != want {
				t.Errorf("%s image %s, want %s with SAGASHOP_IMAGE_PREFIX and SAGASHOP_IMAGE_TAG", name, s.Image, want)
			}
			if value(s.Build.Args, "GO_IMAGE") != "localhost/go" || value(s.Build.Args, "RUNTIME_IMAGE") != "scratch" {
				t.Errorf("%s build args %v do not follow GO_IMAGE and RUNTIME_IMAGE", name, s.Build.Args)
			}
			if want := strconv.Itoa(18000 + i); len(s.Ports) != 1 || s.Ports[0].Published != want {
				t.Errorf("%s ports %v, want host port %s from %s_PORT", name, s.Ports, want, strings.ToUpper(name))
			}
		}
	})
}

// loadCompose loads docker-compose.yml (and overrides on top) as compose
// would, with exactly env as the environment (so the host's variables do not
// leak into the test).
func loadCompose(t *testing.T, root string, env map[string]string, overrides ...string) *types.Project {
	t.Helper()
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping(env),
	}
	for _, f := range overrides {
		details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{Filename: f})
	}
	if details.Environment == nil {
		details.Environment = types.Mapping{}
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("sagashop", true)
	})
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

// serviceDirs lists the services: the folders of services/ with a main.go.
func serviceDirs(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "services"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, "services", e.Name(), "main.go")); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	return names
}

// serviceEnv reads a service's code: the environment variables it reads
// (string literals passed to getenv, os.Getenv or os.LookupEnv in its own
// folder and in the shared pkg/platform and pkg/telemetry) and its default
// HTTP address (the third argument of its platform.ParseConfig call).
func serviceEnv(t *testing.T, root, name string) (map[string]bool, string) {
	t.Helper()
	reads := map[string]bool{}
	var defaultAddr string
	for _, dir := range []string{"services/" + name, "pkg/platform", "pkg/telemetry"} {
		fset := token.NewFileSet()
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				switch fun := call.Fun.(type) {
				case *ast.Ident:
					if fun.Name == "getenv" {
						if s, ok := stringLit(call, 0); ok {
							reads[s] = true
						}
					}
				case *ast.SelectorExpr:
					if x, ok := fun.X.(*ast.Ident); ok && x.Name == "os" && (fun.Sel.Name == "Getenv" || fun.Sel.Name == "LookupEnv") {
						if s, ok := stringLit(call, 0); ok {
							reads[s] = true
						}
					}
					if x, ok := fun.X.(*ast.Ident); ok && x.Name == "platform" && fun.Sel.Name == "ParseConfig" {
						if s, ok := stringLit(call, 2); ok {
							defaultAddr = s
						}
					}
				}
				return true
			})
		}
	}
	if defaultAddr == "" {
		t.Fatalf("services/%s: no platform.ParseConfig(getenv, name, \":port\") call found", name)
	}
	return reads, defaultAddr
}

func stringLit(call *ast.CallExpr, i int) (string, bool) {
	if len(call.Args) <= i {
		return "", false
	}
	lit, ok := call.Args[i].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// dockerfileArgs returns the build arguments the Dockerfile gives a default
// (ARG NAME=default), which compose must pass with the same defaults.
func dockerfileArgs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^ARG (\w+)=(\S+)$`).FindAllStringSubmatch(string(b), -1) {
		args[m[1]] = m[2]
	}
	if args["GO_IMAGE"] == "" || args["RUNTIME_IMAGE"] == "" {
		t.Fatalf("Dockerfile: no defaults for GO_IMAGE and RUNTIME_IMAGE (found %v)", args)
	}
	return args
}

// kafkaVersion is the Kafka version the local stack runs
// (tools/kafka/pom.xml), which the compose default image must match.
// The Jaeger release every part of the project runs: the module version of
// tools/jaeger (make run) is the release published as the jaegertracing/jaeger
// image (compose, testcontainers) and built locally by make containers.
const (
	jaegerModule  = "v1.76.0"
	jaegerRelease = "2.13.0"
)

func kafkaVersion(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "tools/kafka/pom.xml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(b)
	if m == nil {
		t.Fatal("tools/kafka/pom.xml: no <kafka.version>")
	}
	return string(m[1])
}

func value(m types.MappingWithEquals, k string) string {
	if v := m[k]; v != nil {
		return *v
	}
	return ""
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
