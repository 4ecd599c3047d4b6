package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestSmoke is the README's curl session ("Try it") against a system that
// is already running (docker compose up, or make run), with the outcomes
// the README describes checked: alice's two mugs end SHIPPED, with a
// shipment and an order_shipped email, her balance down by their price and
// the mug's stock down by two; bob's T-shirt ends CANCELLED with reason
// payment_failed and an order_cancelled email; the spans of all five
// services reach Jaeger.
//
// It runs only with SAGASHOP_SMOKE=1 (make containers' compose step and make
// fresh-machine set it), and then fails when the system does not answer.
// The host ports are docker-compose.yml's variables, ORDER_PORT, PAYMENT_PORT,
// INVENTORY_PORT, SHIPPING_PORT, EMAIL_PORT and JAEGER_UI_PORT, on
// 127.0.0.1, by default make run's.
func TestSmoke(t *testing.T) {
	switch v := os.Getenv("SAGASHOP_SMOKE"); v {
	case "":
		t.Skip("SAGASHOP_SMOKE is unset: no running system to drive")
	case "1":
	default:
		t.Fatalf("SAGASHOP_SMOKE=%q: want 1 (run) or unset (skip)", v)
	}
	s, jaeger := runningStack(t)

	t.Log("alice orders two mugs: paid, reserved, shipped")
	mug, before := s.product("mug"), s.balance("alice")
	t.Logf("before: mug %+v; alice's balance %d", mug, before)
	o := s.placeOrder("alice", item{SKU: "mug", Quantity: 2})
	t.Logf("POST /orders: %s", o.OrderID)
	final := s.waitTerminal(o.OrderID)
	t.Logf("GET /orders/%s: %+v", o.OrderID, final)
	if final.Status != "SHIPPED" {
		t.Fatalf("alice's order ended %s (%s), want SHIPPED", final.Status, final.Reason)
	}
	var sh shipment
	if code := s.call(http.MethodGet, "shipping", "/shipments/"+o.OrderID, nil, &sh); code != http.StatusOK || sh.OrderID != o.OrderID {
		t.Errorf("GET /shipments/%s: %d %+v", o.OrderID, code, sh)
	}
	t.Logf("GET /shipments/%s: %+v", o.OrderID, sh)
	s.waitEmail(o.OrderID, "order_shipped")
	t.Logf("GET /emails?order_id=%s: %+v", o.OrderID, s.emails(o.OrderID))
	if after := s.balance("alice"); after != before-2*mug.PriceCents {
		t.Errorf("alice's balance %d, want %d - 2 x %d = %d", after, before, mug.PriceCents, before-2*mug.PriceCents)
	} else {
		t.Logf("GET /accounts/alice: balance_cents %d", after)
	}
	if got := s.product("mug"); got.Available != mug.Available-2 {
		t.Errorf("mug available %d, want %d - 2", got.Available, mug.Available)
	} else {
		t.Logf("GET /products/mug: available %d", got.Available)
	}

	t.Log("bob cannot pay for a T-shirt")
	o = s.placeOrder("bob", item{SKU: "tshirt", Quantity: 1})
	t.Logf("POST /orders: %s", o.OrderID)
	final = s.waitTerminal(o.OrderID)
	t.Logf("GET /orders/%s: %+v", o.OrderID, final)
	if final.Status != "CANCELLED" || final.Reason != "payment_failed" {
		t.Fatalf("bob's order ended %s (%s), want CANCELLED (payment_failed)", final.Status, final.Reason)
	}
	s.waitEmail(o.OrderID, "order_cancelled")
	t.Logf("GET /emails?order_id=%s: %+v", o.OrderID, s.emails(o.OrderID))

	t.Log("every service's spans reached Jaeger")
	var names []string
	eventually(t, 30*time.Second, "all five services in Jaeger's /api/services", func() bool {
		names = jaegerServices(s.client, jaeger)
		for _, name := range services {
			if !slices.Contains(names, name) {
				return false
			}
		}
		return true
	})
	t.Logf("GET %s/api/services: %v", jaeger, names)
}

// runningStack is a stack of the services already listening on 127.0.0.1 at
// the ports of docker-compose.yml's variables (make run's by default), once
// each one is ready, and the URL of Jaeger's query API.
func runningStack(t *testing.T) (*stack, string) {
	t.Helper()
	s := &stack{t: t, procs: map[string]*proc{}, mu: &sync.Mutex{}, client: &http.Client{Timeout: 10 * time.Second}}
	ports := map[string][2]string{
		"order": {"ORDER_PORT", "8081"}, "payment": {"PAYMENT_PORT", "8082"}, "inventory": {"INVENTORY_PORT", "8083"},
		"shipping": {"SHIPPING_PORT", "8084"}, "email": {"EMAIL_PORT", "8085"},
	}
	for _, name := range services {
		s.procs[name] = &proc{name: name, addr: "127.0.0.1:" + envOr(ports[name][0], ports[name][1])}
	}
	jaeger := "http://127.0.0.1:" + envOr("JAEGER_UI_PORT", "16686")
	for _, name := range services {
		t.Logf("%s: http://%s", name, s.procs[name].addr)
	}
	t.Logf("jaeger: %s", jaeger)
	for _, name := range services {
		s.waitReady(name)
	}
	return s, jaeger
}

// jaegerServices is Jaeger's list of the services it has spans of (nil when
// it does not answer).
func jaegerServices(c *http.Client, jaeger string) []string {
	resp, err := c.Get(jaeger + "/api/services")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Data []string `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	return body.Data
}
