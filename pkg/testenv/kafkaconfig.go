package testenv

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The broker configuration every Sagashop Kafka shares, and where the local
// ones listen (see the files' comments).
const (
	kafkaSettingsFile  = "tools/kafka/broker.properties"
	kafkaPlacementFile = "tools/kafka/local.properties"
)

// KafkaSettings are the settings of every Sagashop broker, property name to
// value, from tools/kafka/broker.properties.
func KafkaSettings(t testing.TB) map[string]string {
	t.Helper()
	m, err := readProperties(filepath.Join(RepoRoot(t), kafkaSettingsFile))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// KafkaEnvName is the environment variable through which the apache/kafka
// image (and the project's own Kafka image) sets a broker property:
// log.dirs is KAFKA_LOG_DIRS.
func KafkaEnvName(property string) string {
	return "KAFKA_" + strings.ToUpper(strings.ReplaceAll(property, ".", "_"))
}

// KafkaEnv is the environment of a Kafka container: every setting of
// tools/kafka/broker.properties as a KAFKA_* variable, plus placement, the
// container's own variables for where it listens and keeps its data. A
// placement variable that is also a shared setting fails the test: shared
// settings are changed in broker.properties.
func KafkaEnv(t testing.TB, placement map[string]string) map[string]string {
	t.Helper()
	env := make(map[string]string)
	for k, v := range KafkaSettings(t) {
		env[KafkaEnvName(k)] = v
	}
	for k, v := range placement {
		if _, ok := env[k]; ok {
			t.Fatalf("Kafka placement sets %s, a setting of %s: change it there", k, kafkaSettingsFile)
		}
		env[k] = v
	}
	return env
}

// LocalKafkaProperties is the server.properties of a broker on loopback, as
// tools/infra.sh writes it: broker.properties, then local.properties with
// its placeholders replaced.
func LocalKafkaProperties(root string, port, controllerPort int, dataDir string) (string, error) {
	settings, err := os.ReadFile(filepath.Join(root, kafkaSettingsFile))
	if err != nil {
		return "", err
	}
	placement, err := os.ReadFile(filepath.Join(root, kafkaPlacementFile))
	if err != nil {
		return "", err
	}
	local := strings.NewReplacer(
		"@PORT@", strconv.Itoa(port),
		"@CONTROLLER_PORT@", strconv.Itoa(controllerPort),
		"@DATA_DIR@", dataDir,
	).Replace(string(placement))
	if p := placeholder.FindString(stripComments(local)); p != "" {
		return "", fmt.Errorf("%s: unknown placeholder %s", kafkaPlacementFile, p)
	}
	return string(settings) + local, nil
}

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// readProperties reads the key=value lines of a properties file (the simple
// form the project's files use: no continuations, no escapes).
func readProperties(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := make(map[string]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: want key=value, got %q", path, n, line)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%s:%d: %s set twice", path, n, k)
		}
		m[k] = v
	}
	return m, sc.Err()
}
