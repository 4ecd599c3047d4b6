package events

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestNewerVersionIsAnUnknownVersion(t *testing.T) {
	base := Envelope{ID: "0193a5c0-0000-7000-8000-000000000004", Type: TypeOrderShipped, SchemaVersion: 1,
		Source: "shipping", Subject: "o-1", Data: json.RawMessage(`{"order_id":"o-1","tracking_number":"T"}`)}
	tests := []struct {
		name    string
		version int
		newer   bool
	}{
		{"one above the newest", 2, true},
		{"far above", 99, true},
		{"zero", 0, false},
		{"negative", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			e.SchemaVersion = tt.version
			_, err := Decode[OrderShipped](e)
			if !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("err = %v, want ErrUnknownVersion", err)
			}
			if got := errors.Is(err, ErrNewerVersion); got != tt.newer {
				t.Errorf("errors.Is(%v, ErrNewerVersion) = %v, want %v", err, got, tt.newer)
			}
		})
	}
	if !errors.Is(ErrNewerVersion, ErrUnknownVersion) {
		t.Error("ErrNewerVersion does not match ErrUnknownVersion")
	}
	if errors.Is(ErrUnknownVersion, ErrNewerVersion) {
		t.Error("ErrUnknownVersion matches ErrNewerVersion")
	}
}
