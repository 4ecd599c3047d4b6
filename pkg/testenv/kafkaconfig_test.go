package testenv

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sagashop/sagashop/pkg/broker"
)

// The two files tools/infra.sh and StartPrivateKafka join must not set a
// property twice, and every placeholder of local.properties is replaced.
func TestLocalKafkaProperties(t *testing.T) {
	root := RepoRoot(t)
	settings := KafkaSettings(t)
	placement, err := readProperties(filepath.Join(root, kafkaPlacementFile))
	if err != nil {
		t.Fatal(err)
	}
	for k := range placement {
		if _, ok := settings[k]; ok {
			t.Errorf("%s is in both %s and %s", k, kafkaSettingsFile, kafkaPlacementFile)
		}
	}
	props, err := LocalKafkaProperties(root, 19092, 19093, "/data/kafka")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n",
		"controller.quorum.bootstrap.servers=127.0.0.1:19093\n",
		"log.dirs=/data/kafka\n",
		"auto.create.topics.enable=false\n",
	} {
		if !strings.Contains(props, want) {
			t.Errorf("rendered properties lack %q:\n%s", want, props)
		}
	}
	if strings.Contains(stripComments(props), "@") {
		t.Errorf("a placeholder is left:\n%s", props)
	}
}

func TestKafkaEnv(t *testing.T) {
	if got := KafkaEnvName("transaction.state.log.min.isr"); got != "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR" {
		t.Errorf("KafkaEnvName = %s", got)
	}
	env := KafkaEnv(t, map[string]string{"KAFKA_LOG_DIRS": "/d"})
	if env["KAFKA_LOG_DIRS"] != "/d" || env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] != "false" {
		t.Errorf("KafkaEnv = %v", env)
	}
}

// The brokers' message.max.bytes is the size pkg/broker's writer is built
// for: a larger limit wastes nothing, a smaller one would refuse the writer's
// largest batches on every retry.
func TestKafkaMessageSizeAgreesWithTheWriter(t *testing.T) {
	v := KafkaSettings(t)["message.max.bytes"]
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("message.max.bytes %q in %s: want an integer", v, kafkaSettingsFile)
	}
	if n != broker.MaxMessageBytes {
		t.Errorf("message.max.bytes = %d in %s, broker.MaxMessageBytes = %d: change both", n, kafkaSettingsFile, broker.MaxMessageBytes)
	}
	if w := broker.NewWriter([]string{"127.0.0.1:9092"}); w.BatchBytes > int64(n) {
		t.Errorf("writer BatchBytes %d above the brokers' message.max.bytes %d", w.BatchBytes, n)
	}
}
