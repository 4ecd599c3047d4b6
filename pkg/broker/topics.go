package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec is how a topic is created: its partitions, its replication
// factor and its topic-level settings (retention.ms, min.insync.replicas,
// ...; none: the broker's defaults).
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	Config            map[string]string
}

// CreateTopics creates the topics of specs that do not exist yet and returns
// the names of those that existed already, which it leaves as they are (see
// CheckTopics).
func CreateTopics(ctx context.Context, brokers []string, specs ...TopicSpec) (existing []string, err error) {
	if len(specs) == 0 {
		return nil, nil
	}
	client, done := newClient(brokers, 10*time.Second)
	defer done()
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		for _, k := range sortedKeys(s.Config) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: s.Config[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("create topics %v: %w", names(specs), err)
	}
	var errs []error
	for _, s := range specs {
		switch err := resp.Errors[s.Name]; {
		case errors.Is(err, kafka.TopicAlreadyExists):
			existing = append(existing, s.Name)
		case err != nil:
			errs = append(errs, fmt.Errorf("create topic %s: %w", s.Name, err))
		}
	}
	return existing, errors.Join(errs...)
}

// CheckTopics compares existing topics with specs and describes each
// difference ("orders.events: replication factor 1, want 3"). It changes
// nothing: a service that altered a topic at start would undo what an
// operator set on purpose, and replicas of two versions would flip it back
// and forth; the replication factor cannot be changed by a setting at all
// (it takes a partition reassignment).
func CheckTopics(ctx context.Context, brokers []string, specs ...TopicSpec) ([]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	client, done := newClient(brokers, 10*time.Second)
	defer done()
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names(specs)})
	if err != nil {
		return nil, fmt.Errorf("describe topics %v: %w", names(specs), err)
	}
	var diffs []string
	rf := map[string]int{}
	for _, t := range meta.Topics {
		if t.Error == nil && len(t.Partitions) > 0 {
			rf[t.Name] = len(t.Partitions[0].Replicas)
		}
	}
	req := &kafka.DescribeConfigsRequest{}
	for _, s := range specs {
		if got, ok := rf[s.Name]; ok && s.ReplicationFactor > 0 && got != s.ReplicationFactor {
			diffs = append(diffs, fmt.Sprintf("%s: replication factor %d, want %d", s.Name, got, s.ReplicationFactor))
		}
		if len(s.Config) > 0 {
			req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
				ResourceType: kafka.ResourceTypeTopic, ResourceName: s.Name, ConfigNames: sortedKeys(s.Config),
			})
		}
	}
	if len(req.Resources) == 0 {
		return diffs, nil
	}
	resp, err := client.DescribeConfigs(ctx, req)
	if err != nil {
		return diffs, fmt.Errorf("describe topic configs: %w", err)
	}
	want := map[string]map[string]string{}
	for _, s := range specs {
		want[s.Name] = s.Config
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			diffs = append(diffs, fmt.Sprintf("%s: settings not readable: %v", r.ResourceName, r.Error))
			continue
		}
		for _, e := range r.ConfigEntries {
			if w, ok := want[r.ResourceName][e.ConfigName]; ok && w != e.ConfigValue {
				diffs = append(diffs, fmt.Sprintf("%s: %s=%s, want %s", r.ResourceName, e.ConfigName, e.ConfigValue, w))
			}
		}
	}
	return diffs, nil
}

func names(specs []TopicSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
