package main

import (
	"errors"
	"testing"

	"github.com/sagashop/sagashop/pkg/validation"
)

func TestValidateDeposit(t *testing.T) {
	tests := []struct {
		name    string
		amount  int64
		wantErr bool
	}{
		{"smallest", 1, false},
		{"typical", 10_000, false},
		{"largest", MaxDepositCents, false},
		{"zero", 0, true},
		{"negative", -5, true},
		{"above the cap", MaxDepositCents + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateDeposit(tt.amount)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ValidateDeposit(%d) = %v, want error %v", tt.amount, err, tt.wantErr)
			}
			if err != nil {
				var v validation.Fields
				if !errors.Is(err, ErrInvalid) || !errors.As(err, &v) || v["amount_cents"] == "" {
					t.Fatalf("error %v: want a validation.Fields error on amount_cents matching ErrInvalid", err)
				}
			}
		})
	}
}

func TestValidateCharge(t *testing.T) {
	tests := []struct {
		name       string
		customerID string
		amount     int64
		wantFields []string
	}{
		{"ok", "c1", 500, nil},
		{"zero total", "c1", 0, nil},
		{"negative total", "c1", -1, []string{"amount_cents"}},
		{"no customer", "", 500, []string{"customer_id"}},
		{"both", "", -1, []string{"customer_id", "amount_cents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateCharge(tt.customerID, tt.amount)
			if len(tt.wantFields) == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var v validation.Fields
			if !errors.As(err, &v) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v: want a validation.Fields error", err)
			}
			if len(v) != len(tt.wantFields) {
				t.Fatalf("fields %v, want %v", v, tt.wantFields)
			}
			for _, f := range tt.wantFields {
				if v[f] == "" {
					t.Errorf("no message for %s in %v", f, v)
				}
			}
		})
	}
}

func TestCharge(t *testing.T) {
	tests := []struct {
		name    string
		amount  int64
		covered bool
		want    Status
	}{
		{"covered", 1000, true, StatusCharged},
		{"not covered", 1000, false, StatusFailed},
		{"zero total covered by any balance", 0, true, StatusCharged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Charge("o1", "c1", tt.amount, tt.covered)
			if p.Status != tt.want {
				t.Fatalf("status %s, want %s", p.Status, tt.want)
			}
			if p.OrderID != "o1" || p.CustomerID != "c1" || p.AmountCents != tt.amount {
				t.Fatalf("payment %+v lost its identity", p)
			}
		})
	}
}

func TestNeedsDebit(t *testing.T) {
	if NeedsDebit(0) {
		t.Error("a zero total needs no debit")
	}
	if !NeedsDebit(1) {
		t.Error("a positive total needs a debit")
	}
}

func TestRefund(t *testing.T) {
	tests := []struct {
		name    string
		status  Status
		want    Status
		wantErr error
	}{
		{"charged is refunded", StatusCharged, StatusRefunded, nil},
		{"refunded twice", StatusRefunded, StatusRefunded, ErrAlreadyRefunded},
		{"failed has nothing to refund", StatusFailed, StatusFailed, ErrNotCharged},
		{"tombstone has nothing to refund", StatusCancelled, StatusCancelled, ErrNotCharged},
		{"unknown status", Status("BOGUS"), Status("BOGUS"), ErrNotCharged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Payment{OrderID: "o1", CustomerID: "c1", AmountCents: 100, Status: tt.status}
			got, err := p.Refund()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got.Status != tt.want {
				t.Fatalf("status %s, want %s", got.Status, tt.want)
			}
			if got.AmountCents != p.AmountCents {
				t.Fatalf("amount changed: %d", got.AmountCents)
			}
		})
	}
}
