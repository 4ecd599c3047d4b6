package main

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sagashop/sagashop/pkg/servicetest"
)

// validID mirrors web.CheckID, which the domain is given, never imports.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`).MatchString

func TestTransition(t *testing.T) {
	tests := []struct {
		name     string
		from, to Status
		reason   string
		want     Decision
	}{
		{"paid from pending", StatusPending, StatusPaid, "", Advance},
		{"reserved from paid", StatusPaid, StatusReserved, "", Advance},
		{"reserved before paid", StatusPending, StatusReserved, "", Advance},
		{"shipped from reserved", StatusReserved, StatusShipped, "", Advance},
		{"shipped before paid", StatusPending, StatusShipped, "", Advance},
		{"shipped before reserved", StatusPaid, StatusShipped, "", Advance},
		{"cancelled from pending", StatusPending, StatusCancelled, "", Advance},
		{"cancelled from paid", StatusPaid, StatusCancelled, "", Advance},
		{"cancelled from reserved: a reserved order ships unless it times out", StatusReserved, StatusCancelled, "out_of_stock", Refused},
		{"cancelled from reserved for a failed payment", StatusReserved, StatusCancelled, "payment_failed", Refused},
		{"cancelled from reserved with no reason", StatusReserved, StatusCancelled, "", Refused},
		{"timed out from pending", StatusPending, StatusCancelled, ReasonTimedOut, Advance},
		{"timed out from paid", StatusPaid, StatusCancelled, ReasonTimedOut, Advance},
		{"timed out from reserved: shipping answered it will never ship", StatusReserved, StatusCancelled, ReasonTimedOut, Advance},
		{"timed out after shipped", StatusShipped, StatusCancelled, ReasonTimedOut, Final},
		{"timed out after cancelled", StatusCancelled, StatusCancelled, ReasonTimedOut, Final},
		{"shipped after timed out", StatusCancelled, StatusShipped, "", Final},
		{"paid again", StatusPaid, StatusPaid, "", Stale},
		{"paid after reserved", StatusReserved, StatusPaid, "", Stale},
		{"reserved again", StatusReserved, StatusReserved, "", Stale},
		{"pending is never a target", StatusPaid, StatusPending, "", Stale},
		{"paid after shipped", StatusShipped, StatusPaid, "", Final},
		{"reserved after shipped", StatusShipped, StatusReserved, "", Final},
		{"shipped again", StatusShipped, StatusShipped, "", Final},
		{"cancelled after shipped", StatusShipped, StatusCancelled, "", Final},
		{"paid after cancelled", StatusCancelled, StatusPaid, "", Final},
		{"reserved after cancelled", StatusCancelled, StatusReserved, "", Final},
		{"shipped after cancelled", StatusCancelled, StatusShipped, "", Final},
		{"cancelled again", StatusCancelled, StatusCancelled, "", Final},
		{"unknown current status", Status("LOST"), StatusPaid, "", Refused},
		{"unknown target", StatusPending, Status("LOST"), "", Refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Transition(tt.from, tt.to, tt.reason); got != tt.want {
				t.Errorf("Transition(%s, %s, %q) = %s, want %s", tt.from, tt.to, tt.reason, got, tt.want)
			}
		})
	}
}

func TestStuck(t *testing.T) {
	deadline := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	before, after := deadline.Add(-time.Second), deadline.Add(time.Second)
	tests := []struct {
		name    string
		status  Status
		expired bool
		now     time.Time
		want    string
	}{
		{"pending before its deadline", StatusPending, false, before, ""},
		{"reserved before its deadline", StatusReserved, false, before, ""},
		{"pending at its deadline, not yet swept", StatusPending, false, deadline, "deadline passed, not yet expired by the sweeper"},
		{"paid past its deadline, not yet swept", StatusPaid, false, after, "deadline passed, not yet expired by the sweeper"},
		{"reserved past its deadline, expired", StatusReserved, true, after, "deadline passed, waiting for shipping's answer"},
		{"shipped past its deadline", StatusShipped, true, after, ""},
		{"cancelled past its deadline", StatusCancelled, true, after, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Stuck(tt.status, deadline, tt.expired, tt.now); got != tt.want {
				t.Errorf("Stuck(%s, expired %v) = %q, want %q", tt.status, tt.expired, got, tt.want)
			}
		})
	}
	if got := Stuck(StatusPending, time.Time{}, false, after); got != "" {
		t.Errorf("Stuck without a deadline = %q", got)
	}
}

func validOrder() NewOrder {
	return NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{SKU: "mug", Quantity: 2}}}
}

func TestNewOrderValidate(t *testing.T) {
	manyItems := func(n int) []LineItem {
		items := make([]LineItem, n)
		for i := range items {
			items[i] = LineItem{SKU: "sku-" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26)), Quantity: 1}
		}
		return items
	}
	tests := []struct {
		name   string
		change func(o *NewOrder)
		want   []string // fields with a problem; none = valid
	}{
		{"valid", func(o *NewOrder) {}, nil},
		{"valid with 50 items of 1000", func(o *NewOrder) {
			o.Items = manyItems(50)
			for i := range o.Items {
				o.Items[i].Quantity = 1000
			}
		}, nil},
		{"valid id characters", func(o *NewOrder) { o.CustomerID = "Cust_1.a:b-2" }, nil},
		{"missing customer", func(o *NewOrder) { o.CustomerID = "" }, []string{"customer_id"}},
		{"sql in customer id", func(o *NewOrder) { o.CustomerID = "1'; DROP TABLE orders;--" }, []string{"customer_id"}},
		{"customer id of 10 kB", func(o *NewOrder) { o.CustomerID = strings.Repeat("c", 10_000) }, []string{"customer_id"}},
		{"customer id of 65 chars", func(o *NewOrder) { o.CustomerID = strings.Repeat("c", 65) }, []string{"customer_id"}},
		{"customer id with a slash", func(o *NewOrder) { o.CustomerID = "c/1" }, []string{"customer_id"}},
		{"missing email", func(o *NewOrder) { o.Email = "" }, []string{"email"}},
		{"email without @", func(o *NewOrder) { o.Email = "c1.example.com" }, []string{"email"}},
		{"email with display name", func(o *NewOrder) { o.Email = "Carl <c1@example.com>" }, []string{"email"}},
		{"email in angle brackets", func(o *NewOrder) { o.Email = "<c1@example.com>" }, []string{"email"}},
		{"email with comment", func(o *NewOrder) { o.Email = "c1@example.com (Carl)" }, []string{"email"}},
		{"two emails", func(o *NewOrder) { o.Email = "a@example.com, b@example.com" }, []string{"email"}},
		{"email with newline", func(o *NewOrder) { o.Email = "c1@example.com\nBcc: x@example.com" }, []string{"email"}},
		{"email of 255 chars", func(o *NewOrder) { o.Email = strings.Repeat("a", 64) + "@" + strings.Repeat("b", 186) + ".com" }, []string{"email"}},
		{"no items", func(o *NewOrder) { o.Items = nil }, []string{"items"}},
		{"empty items", func(o *NewOrder) { o.Items = []LineItem{} }, []string{"items"}},
		{"51 items", func(o *NewOrder) { o.Items = manyItems(51) }, []string{"items"}},
		{"missing sku", func(o *NewOrder) { o.Items[0].SKU = "" }, []string{"items[0].sku"}},
		{"sql in sku", func(o *NewOrder) { o.Items[0].SKU = "x' OR '1'='1" }, []string{"items[0].sku"}},
		{"quantity 0", func(o *NewOrder) { o.Items[0].Quantity = 0 }, []string{"items[0].quantity"}},
		{"quantity negative", func(o *NewOrder) { o.Items[0].Quantity = -1 }, []string{"items[0].quantity"}},
		{"quantity 1001", func(o *NewOrder) { o.Items[0].Quantity = 1001 }, []string{"items[0].quantity"}},
		{"duplicate sku", func(o *NewOrder) {
			o.Items = []LineItem{{SKU: "mug", Quantity: 1}, {SKU: "pen", Quantity: 1}, {SKU: "mug", Quantity: 3}}
		}, []string{"items[2].sku"}},
		{"everything wrong", func(o *NewOrder) {
			o.CustomerID, o.Email = "", "nope"
			o.Items = []LineItem{{SKU: "", Quantity: 0}}
		}, []string{"customer_id", "email", "items[0].quantity", "items[0].sku"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOrder()
			tt.change(&o)
			err := o.Validate(validID)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			servicetest.RequireFieldErrors(t, err, ErrInvalid, tt.want...)
		})
	}
}

func TestNewOrderHash(t *testing.T) {
	base := NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{"mug", 2}, {"pen", 1}}}
	same := []struct {
		name string
		o    NewOrder
	}{
		{"identical", NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{"mug", 2}, {"pen", 1}}}},
		{"items in another order", NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{"pen", 1}, {"mug", 2}}}},
	}
	for _, tt := range same {
		t.Run("same: "+tt.name, func(t *testing.T) {
			if base.Hash() != tt.o.Hash() {
				t.Errorf("hash differs for %+v", tt.o)
			}
		})
	}
	different := []struct {
		name string
		o    NewOrder
	}{
		{"customer", NewOrder{CustomerID: "c-2", Email: "c1@example.com", Items: []LineItem{{"mug", 2}, {"pen", 1}}}},
		{"email", NewOrder{CustomerID: "c-1", Email: "C1@example.com", Items: []LineItem{{"mug", 2}, {"pen", 1}}}},
		{"quantity", NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{"mug", 3}, {"pen", 1}}}},
		{"sku", NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{"mug", 2}, {"cup", 1}}}},
		{"fewer items", NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{"mug", 2}}}},
		{"fields shifted", NewOrder{CustomerID: "c-1c1@example.com", Email: "", Items: []LineItem{{"mug", 2}, {"pen", 1}}}},
	}
	for _, tt := range different {
		t.Run("different: "+tt.name, func(t *testing.T) {
			if base.Hash() == tt.o.Hash() {
				t.Errorf("hash equal for %+v", tt.o)
			}
		})
	}
	t.Run("does not reorder the caller's items", func(t *testing.T) {
		o := NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{"pen", 1}, {"mug", 2}}}
		o.Hash()
		if o.Items[0].SKU != "pen" {
			t.Errorf("items reordered: %+v", o.Items)
		}
	})
	t.Run("canonical form", func(t *testing.T) {
		// Pinned: changing the form would make every stored key mismatch
		// its retries.
		canonical := `{"customer_id":"c-1","email":"c1@example.com","items":[{"sku":"mug","quantity":2},{"sku":"pen","quantity":1}]}`
		sum := sha256.Sum256([]byte(canonical))
		reversed := NewOrder{CustomerID: "c-1", Email: "c1@example.com", Items: []LineItem{{"pen", 1}, {"mug", 2}}}
		if got, want := reversed.Hash(), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("Hash() = %s, want sha256 of %s = %s", got, canonical, want)
		}
	})
}

func TestValidIdempotencyKey(t *testing.T) {
	tests := []struct {
		name string
		key  string
		want bool
	}{
		{"uuid", "0b8e0e3a-7d0c-4f4c-9d8f-0a6d3c1e9b2f", true},
		{"one char", "k", true},
		{"255 chars", strings.Repeat("k", 255), true},
		{"punctuation", "!~order#1/2?", true},
		{"empty", "", false},
		{"256 chars", strings.Repeat("k", 256), false},
		{"space", "a b", false},
		{"tab", "a\tb", false},
		{"non-ascii", "clé", false},
		{"control", "a\x00b", false},
		{"del", "a\x7fb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidIdempotencyKey(tt.key); got != tt.want {
				t.Errorf("ValidIdempotencyKey(%q) = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
}

func TestPrice(t *testing.T) {
	catalog := map[string]int64{"mug": 1250, "pen": 199, "free": 0, "gold": 50_000_000}
	tests := []struct {
		name      string
		items     []LineItem
		wantTotal int64
		wantBad   []string // fields of the validation error
	}{
		{"one item", []LineItem{{"mug", 2}}, 2500, nil},
		{"two items", []LineItem{{"pen", 3}, {"mug", 1}}, 1250 + 597, nil},
		{"free item", []LineItem{{"free", 5}}, 0, nil},
		{"total at the limit", []LineItem{{"gold", 2}}, 100_000_000, nil},
		{"total over the limit", []LineItem{{"gold", 2}, {"pen", 1}}, 0, []string{"items"}},
		{"unknown skus named", []LineItem{{"mug", 1}, {"cup", 1}, {"bowl", 2}}, 0, []string{"items[1].sku", "items[2].sku"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total, err := Price(tt.items, catalog)
			if tt.wantBad != nil {
				fields := servicetest.RequireFieldErrors(t, err, ErrInvalid, tt.wantBad...)
				if tt.name == "unknown skus named" && (!strings.Contains(fields["items[1].sku"], `"cup"`) || !strings.Contains(fields["items[2].sku"], `"bowl"`)) {
					t.Errorf("fields = %v, want the unknown skus named", fields)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if total != tt.wantTotal {
				t.Errorf("total = %d, want %d", total, tt.wantTotal)
			}
		})
	}
}

func TestProductCheck(t *testing.T) {
	tests := []struct {
		name string
		p    Product
		ok   bool
	}{
		{"valid", Product{"mug", "Mug", 1250}, true},
		{"free", Product{"mug", "Mug", 0}, true},
		{"max price", Product{"mug", "Mug", MaxMoneyCents}, true},
		{"negative price", Product{"mug", "Mug", -1}, false},
		{"absurd price", Product{"mug", "Mug", MaxMoneyCents + 1}, false},
		{"bad sku", Product{"mu g", "Mug", 1}, false},
		{"empty sku", Product{"", "Mug", 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Check(validID); (err == nil) != tt.ok {
				t.Errorf("Check() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
