package main

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{"plain", "ada@example.com", true},
		{"plus and dots", "ada.lovelace+orders@mail.example.co.uk", true},
		{"empty", "", false},
		{"no at", "ada.example.com", false},
		{"display name", "Ada <ada@example.com>", false},
		{"angle brackets", "<ada@example.com>", false},
		{"comment", "ada@example.com (Ada)", false},
		{"header injection", "ada@example.com\r\nBcc: eve@example.com", false},
		{"newline", "ada@example.com\n", false},
		{"two addresses", "ada@example.com, eve@example.com", false},
		{"sql", "'; DROP TABLE recipients; --", false},
		{"too long", strings.Repeat("a", 250) + "@example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckAddress(tt.in)
			if tt.valid && err != nil {
				t.Errorf("CheckAddress(%q) = %v, want nil", tt.in, err)
			}
			if !tt.valid && !errors.Is(err, ErrInvalidAddress) {
				t.Errorf("CheckAddress(%q) = %v, want ErrInvalidAddress", tt.in, err)
			}
		})
	}
}

func TestMessages(t *testing.T) {
	const id = "0190d5a4-1f2b-7cc3-8a4e-9e3b7e2f4d11"
	tests := []struct {
		name        string
		msg         Message
		kind        string
		subject     string
		bodyHas     []string
		bodyHasNone []string
	}{
		{
			name: "shipped", msg: ShippedEmail(id, "SSABCDEF123456"),
			kind: KindOrderShipped, subject: "Your order " + id + " has shipped",
			bodyHas: []string{id, "has shipped", "SSABCDEF123456"},
		},
		{
			name: "shipped without tracking number", msg: ShippedEmail(id, ""),
			kind: KindOrderShipped, subject: "Your order " + id + " has shipped",
			bodyHas: []string{id}, bodyHasNone: []string{"tracking number"},
		},
		{
			name: "cancelled with an explanation", msg: CancelledEmail(id, "payment_failed", "We could not take the payment for it."),
			kind: KindOrderCancelled, subject: "Your order " + id + " was cancelled",
			bodyHas: []string{id, "Reason: payment_failed", "cancelled.\nWe could not take the payment for it.\n"},
		},
		{
			name: "cancelled, nothing to explain", msg: CancelledEmail(id, "customer_request", ""),
			kind: KindOrderCancelled, subject: "Your order " + id + " was cancelled",
			bodyHas: []string{"cancelled.\nReason: customer_request\n"},
		},
		{
			name: "cancelled, no reason", msg: CancelledEmail(id, "", ""),
			kind: KindOrderCancelled, subject: "Your order " + id + " was cancelled",
			bodyHas: []string{"Reason: unknown"},
		},
		{
			name: "cancelled, absurd reason is cut", msg: CancelledEmail(id, strings.Repeat("é", 1000), ""),
			kind: KindOrderCancelled, subject: "Your order " + id + " was cancelled",
			bodyHas: []string{"Reason: " + strings.Repeat("é", maxReasonLen/2) + "…"}, bodyHasNone: []string{strings.Repeat("é", maxReasonLen/2+1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.msg.Kind != tt.kind || tt.msg.Subject != tt.subject {
				t.Errorf("kind %q subject %q, want %q %q", tt.msg.Kind, tt.msg.Subject, tt.kind, tt.subject)
			}
			for _, s := range tt.bodyHas {
				if !strings.Contains(tt.msg.Body, s) {
					t.Errorf("body lacks %q:\n%s", s, tt.msg.Body)
				}
			}
			for _, s := range tt.bodyHasNone {
				if strings.Contains(tt.msg.Body, s) {
					t.Errorf("body has %q:\n%s", s, tt.msg.Body)
				}
			}
		})
	}
}
