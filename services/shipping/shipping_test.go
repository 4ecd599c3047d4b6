package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestNewTrackingNumber(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tn, err := NewTrackingNumber()
		if err != nil {
			t.Fatal(err)
		}
		if !ValidTrackingNumber(tn) {
			t.Fatalf("NewTrackingNumber() = %q, not a valid tracking number", tn)
		}
		if seen[tn] {
			t.Fatalf("NewTrackingNumber() repeated %q", tn)
		}
		seen[tn] = true
	}
}

func TestNewTrackingNumberFromReader(t *testing.T) {
	tests := []struct {
		name    string
		random  []byte
		want    string
		wantErr bool
	}{
		{
			name:   "each byte picks a character modulo 36",
			random: []byte{0, 1, 25, 26, 35, 36, 37, 71, 72, 251, 2, 3},
			want:   "SSABZ09AB9A9CD",
		},
		{
			name: "bytes 252 and above are skipped",
			random: append([]byte{252, 253, 254, 255, 0, 1, 2, 3, 4, 5, 6, 7},
				[]byte{8, 9, 10, 11, 0, 0, 0, 0, 0, 0, 0, 0}...),
			want: "SSABCDEFGHIJKL",
		},
		{
			name:    "a failing source is an error",
			random:  []byte{1, 2, 3},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newTrackingNumber(bytes.NewReader(tt.random))
			if tt.wantErr {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidTrackingNumber(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"valid", "SSABCDEF123456", true},
		{"all digits", "SS000000000000", true},
		{"empty", "", false},
		{"wrong prefix", "XXABCDEF123456", false},
		{"lower case", "SSabcdef123456", false},
		{"too short", "SSABCDEF12345", false},
		{"too long", "SSABCDEF1234567", false},
		{"punctuation", "SSABCDEF12345-", false},
		{"sql", "SS'; DROP T--", false},
		{"very long", "SS" + strings.Repeat("A", 10000), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidTrackingNumber(tt.in); got != tt.want {
				t.Errorf("ValidTrackingNumber(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
