package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestIdempotencyKey(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		want    string
		refused bool
	}{
		{"none", nil, "", false},
		{"a uuid", []string{"0193a5c0-0000-7000-8000-000000000001"}, "0193a5c0-0000-7000-8000-000000000001", false},
		{"visible ASCII", []string{"a!~Z:9"}, "a!~Z:9", false},
		{"255 characters", []string{strings.Repeat("k", 255)}, strings.Repeat("k", 255), false},
		{"256 characters", []string{strings.Repeat("k", 256)}, "", true},
		{"empty", []string{""}, "", true},
		{"a space", []string{"a b"}, "", true},
		{"non-ASCII", []string{"clé"}, "", true},
		{"control character", []string{"a\tb"}, "", true},
		{"given twice", []string{"a", "b"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			for _, v := range tt.values {
				r.Header.Add("Idempotency-Key", v)
			}
			got, err := IdempotencyKey(r)
			var re *RequestError
			switch {
			case tt.refused && (!errors.As(err, &re) || re.Status != http.StatusBadRequest):
				t.Fatalf("err = %v, want a 400 RequestError", err)
			case !tt.refused && (err != nil || got != tt.want):
				t.Fatalf("IdempotencyKey = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
