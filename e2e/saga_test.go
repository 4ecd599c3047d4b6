// Package e2e drives the running system over HTTP only: it builds the five
// service binaries, runs them as processes against the real PostgreSQL (a
// database of its own) and a private Apache Kafka broker, and checks the
// invariants of the saga rather than call sequences: every order ends
// SHIPPED or CANCELLED, stock and money are conserved, nothing happens twice.
package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Available  int    `json:"available"`
	Reserved   int    `json:"reserved"`
}

type account struct {
	CustomerID   string `json:"customer_id"`
	BalanceCents int64  `json:"balance_cents"`
}

type item struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents,omitempty"`
}

type order struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	TotalCents int64  `json:"total_cents"`
	Items      []item `json:"items"`
	Reason     string `json:"reason"`
}

type payment struct {
	OrderID     string `json:"order_id"`
	Status      string `json:"status"`
	AmountCents int64  `json:"amount_cents"`
}

type shipment struct {
	OrderID        string `json:"order_id"`
	TrackingNumber string `json:"tracking_number"`
	Status         string `json:"status"`
}

type email struct {
	OrderID string `json:"order_id"`
	Kind    string `json:"kind"`
	To      string `json:"to"`
	Subject string `json:"subject"`
}

const sagaTimeout = 60 * time.Second

func (s *stack) putProduct(sku string, price int64, available int) {
	s.t.Helper()
	code := s.call(http.MethodPut, "inventory", "/products/"+sku, map[string]any{"name": "Product " + sku, "price_cents": price, "available": available}, nil)
	if code != http.StatusOK && code != http.StatusCreated {
		s.t.Fatalf("PUT /products/%s: %d", sku, code)
	}
}

func (s *stack) deposit(customer string, amount int64) {
	s.t.Helper()
	if code := s.call(http.MethodPost, "payment", "/accounts/"+customer+"/deposits", map[string]any{"amount_cents": amount}, nil); code != http.StatusCreated {
		s.t.Fatalf("deposit for %s: %d", customer, code)
	}
}

func (s *stack) product(sku string) product {
	s.t.Helper()
	var p product
	if code := s.call(http.MethodGet, "inventory", "/products/"+sku, nil, &p); code != http.StatusOK {
		s.t.Fatalf("GET /products/%s: %d", sku, code)
	}
	return p
}

func (s *stack) balance(customer string) int64 {
	s.t.Helper()
	var a account
	if code := s.call(http.MethodGet, "payment", "/accounts/"+customer, nil, &a); code != http.StatusOK {
		return 0
	}
	return a.BalanceCents
}

// placeOrder posts an order. The order service learns the catalog from
// inventory's events, so right after a PUT /products a SKU can still be
// unknown to it (422, nothing created): retry that until the deadline.
func (s *stack) placeOrder(customer string, items ...item) order {
	s.t.Helper()
	o, err := s.tryPlaceOrder(customer, items...)
	if err != nil {
		s.t.Fatal(err)
	}
	return o
}

// tryPlaceOrder is placeOrder returning its error instead of failing the
// test, for goroutines other than the test's.
func (s *stack) tryPlaceOrder(customer string, items ...item) (order, error) {
	body := map[string]any{"customer_id": customer, "email": customer + "@example.com", "items": items}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var o order
		code, err := s.tryCall(http.MethodPost, "order", "/orders", body, &o)
		if err != nil {
			return order{}, err
		}
		if code == http.StatusCreated {
			if o.Status != "PENDING" || o.OrderID == "" {
				return order{}, fmt.Errorf("new order: %+v", o)
			}
			return o, nil
		}
		if code != http.StatusUnprocessableEntity || time.Now().After(deadline) {
			return order{}, fmt.Errorf("POST /orders for %s: %d", customer, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// placeConcurrently places n orders at once, the i-th by customer(i) for one
// line item(i). The goroutines only collect errors: the test fails here,
// after they all returned.
func (s *stack) placeConcurrently(n int, customer func(i int) string, line func(i int) item) []order {
	s.t.Helper()
	var mu sync.Mutex
	var placed []order
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o, err := s.tryPlaceOrder(customer(i), line(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			placed = append(placed, o)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.t.Fatalf("%d of %d orders not placed:\n%v", len(errs), n, err)
	}
	return placed
}

// waitTerminal polls the order until SHIPPED or CANCELLED.
func (s *stack) waitTerminal(id string) order {
	s.t.Helper()
	var o order
	eventually(s.t, sagaTimeout, "order "+id+" to reach SHIPPED or CANCELLED", func() bool {
		o = order{}
		s.call(http.MethodGet, "order", "/orders/"+id, nil, &o)
		return o.Status == "SHIPPED" || o.Status == "CANCELLED"
	})
	return o
}

func (s *stack) emails(orderID string) []email {
	s.t.Helper()
	var es []email
	if code := s.call(http.MethodGet, "email", "/emails?order_id="+orderID, nil, &es); code != http.StatusOK {
		s.t.Fatalf("GET /emails: %d", code)
	}
	return es
}

// waitEmail polls until the order has an email of kind, then checks that it
// has exactly one of each kind.
func (s *stack) waitEmail(orderID, kind string) {
	s.t.Helper()
	eventually(s.t, sagaTimeout, kind+" email for "+orderID, func() bool {
		for _, e := range s.emails(orderID) {
			if e.Kind == kind {
				return true
			}
		}
		return false
	})
	seen := map[string]int{}
	for _, e := range s.emails(orderID) {
		seen[e.Kind]++
		if e.To != "" && !strings.HasSuffix(e.To, "@example.com") {
			s.t.Errorf("email to %q", e.To)
		}
	}
	for k, n := range seen {
		if n != 1 {
			s.t.Errorf("order %s has %d emails of kind %s", orderID, n, k)
		}
	}
}

func TestSaga(t *testing.T) {
	s := startStack(t)

	t.Run("happy path ships", func(t *testing.T) {
		s := s.with(t)
		s.putProduct("mug-happy", 1299, 10)
		s.deposit("c-happy", 10_000)
		start := time.Now()
		o := s.placeOrder("c-happy", item{SKU: "mug-happy", Quantity: 2})
		final := s.waitTerminal(o.OrderID)
		t.Logf("POST /orders to %s took %s", final.Status, time.Since(start).Round(time.Millisecond))
		if final.Status != "SHIPPED" || final.TotalCents != 2598 || final.Reason != "" {
			t.Fatalf("order %+v", final)
		}
		var sh shipment
		if code := s.call(http.MethodGet, "shipping", "/shipments/"+o.OrderID, nil, &sh); code != http.StatusOK || sh.TrackingNumber == "" {
			t.Fatalf("shipment %d %+v", code, sh)
		}
		var p payment
		if s.call(http.MethodGet, "payment", "/payments/"+o.OrderID, nil, &p); p.Status != "CHARGED" || p.AmountCents != 2598 {
			t.Fatalf("payment %+v", p)
		}
		if b := s.balance("c-happy"); b != 10_000-2598 {
			t.Fatalf("balance %d", b)
		}
		eventually(t, sagaTimeout, "reservation released after shipping", func() bool {
			p := s.product("mug-happy")
			return p.Available == 8 && p.Reserved == 0
		})
		s.waitEmail(o.OrderID, "order_shipped")
		s.assertOrderTrace(o.OrderID, "order", "payment", "inventory", "shipping", "email")
		s.assertCorrelatedLogs(o.OrderID, "payment", "inventory", "shipping", "email")
	})

	t.Run("payment failure cancels", func(t *testing.T) {
		s := s.with(t)
		s.putProduct("mug-poor", 5000, 10)
		s.deposit("c-poor", 100)
		o := s.placeOrder("c-poor", item{SKU: "mug-poor", Quantity: 1})
		final := s.waitTerminal(o.OrderID)
		if final.Status != "CANCELLED" || final.Reason != "payment_failed" {
			t.Fatalf("order %+v", final)
		}
		var p payment
		if s.call(http.MethodGet, "payment", "/payments/"+o.OrderID, nil, &p); p.Status != "FAILED" {
			t.Fatalf("payment %+v", p)
		}
		if b := s.balance("c-poor"); b != 100 {
			t.Fatalf("balance %d", b)
		}
		if p := s.product("mug-poor"); p.Available != 10 || p.Reserved != 0 {
			t.Fatalf("stock touched: %+v", p)
		}
		s.waitEmail(o.OrderID, "order_cancelled")
		if code := s.call(http.MethodGet, "shipping", "/shipments/"+o.OrderID, nil, nil); code != http.StatusNotFound {
			t.Fatalf("shipment for a cancelled order: %d", code)
		}
		s.assertOrderTrace(o.OrderID, "order", "payment", "email")
	})

	t.Run("out of stock after payment refunds", func(t *testing.T) {
		s := s.with(t)
		s.putProduct("mug-scarce", 1000, 1)
		s.deposit("c-scarce", 10_000)
		o := s.placeOrder("c-scarce", item{SKU: "mug-scarce", Quantity: 2})
		final := s.waitTerminal(o.OrderID)
		if final.Status != "CANCELLED" || final.Reason != "out_of_stock" {
			t.Fatalf("order %+v", final)
		}
		var p payment
		if s.call(http.MethodGet, "payment", "/payments/"+o.OrderID, nil, &p); p.Status != "REFUNDED" {
			t.Fatalf("payment %+v", p)
		}
		if b := s.balance("c-scarce"); b != 10_000 {
			t.Fatalf("balance %d after refund", b)
		}
		if p := s.product("mug-scarce"); p.Available != 1 || p.Reserved != 0 {
			t.Fatalf("stock %+v", p)
		}
		s.waitEmail(o.OrderID, "order_cancelled")
		s.assertOrderTrace(o.OrderID, "order", "payment", "inventory", "email")
	})

	t.Run("concurrent orders for scarce stock", func(t *testing.T) {
		s := s.with(t)
		const stock, orders, customers = 7, 30, 6
		s.putProduct("lamp-rush", 700, stock)
		deposits := map[string]int64{}
		for i := range customers {
			c := fmt.Sprintf("c-rush-%d", i)
			deposits[c] = 10_000
			s.deposit(c, 10_000)
		}
		// One poor customer whose orders fail payment.
		deposits["c-rush-poor"] = 500
		s.deposit("c-rush-poor", 500)

		placed := s.placeConcurrently(orders,
			func(i int) string {
				if i%10 == 0 {
					return "c-rush-poor"
				}
				return fmt.Sprintf("c-rush-%d", i%customers)
			},
			func(int) item { return item{SKU: "lamp-rush", Quantity: 1} })

		// Payment comes before the reservation, so the poor customer's
		// orders never compete for stock; every other order is charged and
		// then either reserves its unit or, once the stock is gone, is
		// refunded. Reservations are never released unshipped, so exactly
		// min(stock, paid orders) units ship.
		shippedQty, paid, spent := 0, 0, map[string]int64{}
		for _, o := range placed {
			final := s.waitTerminal(o.OrderID)
			switch {
			case final.CustomerID == "c-rush-poor":
				if final.Status != "CANCELLED" || final.Reason != "payment_failed" {
					t.Errorf("poor customer's order %s: %s (%s), want CANCELLED (payment_failed)", o.OrderID, final.Status, final.Reason)
				}
			case final.Status == "SHIPPED":
				paid++
				shippedQty++
				spent[final.CustomerID] += final.TotalCents
			case final.Status == "CANCELLED" && final.Reason == "out_of_stock":
				paid++
			default:
				t.Errorf("order %s: %s (%s), want SHIPPED or CANCELLED (out_of_stock)", o.OrderID, final.Status, final.Reason)
			}
		}
		if want := min(stock, paid); shippedQty != want {
			t.Fatalf("shipped %d units, want min(stock %d, paid orders %d) = %d", shippedQty, stock, paid, want)
		}
		eventually(t, sagaTimeout, "stock to settle", func() bool {
			p := s.product("lamp-rush")
			return p.Reserved == 0 && p.Available == stock-shippedQty
		})
		for c, d := range deposits {
			if b := s.balance(c); b != d-spent[c] {
				t.Errorf("customer %s: balance %d, want deposits %d - shipped %d", c, b, d, spent[c])
			}
		}
		t.Logf("%d orders: %d shipped, stock %d", orders, shippedQty, stock)
	})
}

// with returns a copy of the stack whose helpers report to t (a subtest).
func (s *stack) with(t *testing.T) *stack {
	c := *s
	c.t = t
	return &c
}
