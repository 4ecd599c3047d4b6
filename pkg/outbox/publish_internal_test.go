package outbox

import (
	"errors"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
)

// Which refusals are for good: a message that no retry can get through is
// set aside; anything that a fix of the configuration or time may cure is
// retried.
func TestPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"broker: message too large", kafka.MessageSizeTooLarge, reasonTooLarge},
		{"writer: message too large", kafka.MessageTooLargeError{}, reasonTooLarge},
		{"record list too large", kafka.RecordListTooLarge, reasonTooLarge},
		{"wrapped", fmt.Errorf("produce: %w", kafka.InvalidMessage), reasonInvalid},
		{"invalid record", kafka.InvalidRecord, reasonInvalid},
		{"invalid timestamp", kafka.InvalidTimestamp, reasonInvalid},
		{"not authorized: configuration", kafka.TopicAuthorizationFailed, ""},
		{"unknown topic: only after a grace", kafka.UnknownTopicOrPartition, ""},
		{"leader moved", kafka.NotLeaderForPartition, ""},
		{"not enough replicas", kafka.NotEnoughReplicas, ""},
		{"network", errors.New("dial tcp: connection refused"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := permanent(tt.err); got != tt.want {
				t.Errorf("permanent(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}
