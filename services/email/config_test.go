package main

import (
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantErr  []string // parts of the error; nil means no error
		wantAddr string
		wantFrom fromAddress
	}{
		{
			name:     "defaults",
			wantFrom: fromAddress{Address: "orders@sagashop.invalid", Header: "<orders@sagashop.invalid>"},
		},
		{
			name:     "smtp server and sender with a name",
			env:      map[string]string{"SMTP_ADDR": "127.0.0.1:1025", "SMTP_FROM": "Sagashop <shop@example.com>"},
			wantAddr: "127.0.0.1:1025",
			wantFrom: fromAddress{Address: "shop@example.com", Header: `"Sagashop" <shop@example.com>`},
		},
		{name: "smtp address without port", env: map[string]string{"SMTP_ADDR": "localhost"}, wantErr: []string{"SMTP_ADDR"}},
		{name: "smtp address without host", env: map[string]string{"SMTP_ADDR": ":25"}, wantErr: []string{"SMTP_ADDR"}},
		{name: "smtp port out of range", env: map[string]string{"SMTP_ADDR": "localhost:70000"}, wantErr: []string{"SMTP_ADDR"}},
		{name: "bad sender", env: map[string]string{"SMTP_FROM": "not an address"}, wantErr: []string{"SMTP_FROM"}},
		{
			name:    "all problems at once",
			env:     map[string]string{"SMTP_ADDR": "nope", "SMTP_FROM": "nope", "LOG_LEVEL": "loud"},
			wantErr: []string{"SMTP_ADDR", "SMTP_FROM", "LOG_LEVEL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(func(k string) string { return tt.env[k] })
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.SMTPAddr != tt.wantAddr || c.SMTPFrom != tt.wantFrom {
				t.Errorf("smtp %q from %+v, want %q %+v", c.SMTPAddr, c.SMTPFrom, tt.wantAddr, tt.wantFrom)
			}
			if c.Platform.HTTPAddr != ":8085" || c.Platform.Service != "email" {
				t.Errorf("platform config %+v", c.Platform)
			}
		})
	}
}
