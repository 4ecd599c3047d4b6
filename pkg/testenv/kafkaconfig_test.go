package testenv

import (
	"path/filepath"
	"strings"
	"testing"
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
