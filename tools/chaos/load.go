package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Scenarios of the mix.
const (
	scenarioShip     = "ship"         // a paying customer, a product in stock: SHIPPED
	scenarioUnpaid   = "unpaid"       // a customer without an account: CANCELLED payment_failed
	scenarioOutStock = "out_of_stock" // a product with no stock: CANCELLED out_of_stock (refunded)
	scenarioScarce   = "scarce"       // a product with little stock, raced for: SHIPPED or CANCELLED out_of_stock
)

// fixtures are the run's products and customers.
type fixtures struct {
	skus        []string
	scarce, oos string
	paying      []string
	unpaid      []string
	stock       map[string]int // initial available units
	price       int64
	deposit     int64
}

const scarceStock = 15

func setUpFixtures(ctx context.Context, st *stack, cfg config) (*fixtures, error) {
	fx := &fixtures{scarce: "chaos-scarce", oos: "chaos-oos", price: 100, deposit: 100_000_000, stock: map[string]int{}}
	for i := range cfg.SKUs {
		sku := fmt.Sprintf("chaos-sku%d", i)
		fx.skus = append(fx.skus, sku)
		fx.stock[sku] = 1_000_000
	}
	fx.stock[fx.scarce], fx.stock[fx.oos] = scarceStock, 0
	for i := range cfg.Customers {
		fx.paying = append(fx.paying, fmt.Sprintf("chaos-c%d", i))
		fx.unpaid = append(fx.unpaid, fmt.Sprintf("chaos-u%d", i))
	}
	for sku, n := range fx.stock {
		body := fmt.Sprintf(`{"name": "chaos product", "price_cents": %d, "available": %d}`, fx.price, n)
		if _, err := st.do(ctx, nil, http.MethodPut, st.url("inventory")+"/products/"+sku, body, nil); err != nil {
			return nil, err
		}
	}
	for _, c := range fx.paying {
		body := fmt.Sprintf(`{"amount_cents": %d}`, fx.deposit)
		hdr := http.Header{"Idempotency-Key": {"deposit-" + c}}
		if _, err := st.do(ctx, hdr, http.MethodPost, st.url("payment")+"/accounts/"+c+"/deposits", body, nil); err != nil {
			return nil, err
		}
	}
	// Orders are priced from the order service's copy of the catalog.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		err := st.admin.QueryRow(ctx, "SELECT count(*) FROM order_svc.products WHERE sku LIKE 'chaos-%'").Scan(&n)
		if err == nil && n == len(fx.stock) {
			return fx, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the order service knows %d of %d products after 60s (%v)", n, len(fx.stock), err)
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// do sends one request (no retries) and decodes a 2xx JSON answer into out.
func (s *stack) do(ctx context.Context, hdr http.Header, method, url, body string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b[:min(len(b), 300)]))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return resp.StatusCode, nil
}

// op is one order of the history: what was asked, every attempt's outcome,
// and how it was resolved.
type op struct {
	Index    int    `json:"index"`
	Scenario string `json:"scenario"`
	Customer string `json:"customer"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Key      string `json:"key"`
	// Intended: seconds after the load started when the schedule sent it.
	Intended float64 `json:"intended_s"`
	Attempts []try   `json:"attempts"`
	// Ack: the order was acknowledged (2xx) with ID; AckAfterHeal: only by
	// the retry after heal.
	Ack          bool   `json:"ack"`
	AckAfterHeal bool   `json:"ack_after_heal,omitempty"`
	Rejected     bool   `json:"rejected,omitempty"` // a 4xx: the client's fault, never retried
	ID           string `json:"order_id,omitempty"`
	Total        int64  `json:"total_cents,omitempty"`
	// From the order service's table after the drain.
	Final  string `json:"final,omitempty"`
	Reason string `json:"reason,omitempty"`
}

type try struct {
	At     float64 `json:"at_s"`
	Status int     `json:"status"` // 0: no answer
	Error  string  `json:"error,omitempty"`
}

type history struct {
	cfg   config
	start time.Time
	ops   []*op
	mu    sync.Mutex
}

// newHistory draws every order of the run from the seed.
func newHistory(cfg config, fx *fixtures) *history {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x10ad))
	h := &history{cfg: cfg}
	interval := 1 / cfg.Rate
	for i := range cfg.Orders {
		o := &op{Index: i, Quantity: 1 + rng.IntN(3), Intended: float64(i) * interval}
		switch p := rng.Float64(); {
		case p < 0.10:
			o.Scenario, o.Customer, o.SKU = scenarioUnpaid, fx.unpaid[rng.IntN(len(fx.unpaid))], fx.skus[rng.IntN(len(fx.skus))]
		case p < 0.20:
			o.Scenario, o.Customer, o.SKU = scenarioOutStock, fx.paying[rng.IntN(len(fx.paying))], fx.oos
		case p < 0.25:
			o.Scenario, o.Customer, o.SKU = scenarioScarce, fx.paying[rng.IntN(len(fx.paying))], fx.scarce
		default:
			o.Scenario, o.Customer, o.SKU = scenarioShip, fx.paying[rng.IntN(len(fx.paying))], fx.skus[rng.IntN(len(fx.skus))]
		}
		o.Key = fmt.Sprintf("chaos-%d-o%d", cfg.Seed%1_000_000, i)
		h.ops = append(h.ops, o)
	}
	return h
}

func (o *op) body() string {
	return fmt.Sprintf(`{"customer_id": %q, "email": "%s@example.com", "items": [{"sku": %q, "quantity": %d}]}`,
		o.Customer, o.Customer, o.SKU, o.Quantity)
}

// attempt sends o's POST once and records it.
func (h *history) attempt(ctx context.Context, st *stack, o *op) (answered bool) {
	var created struct {
		OrderID    string `json:"order_id"`
		TotalCents int64  `json:"total_cents"`
	}
	status, err := st.do(ctx, http.Header{"Idempotency-Key": {o.Key}}, http.MethodPost, st.url("order")+"/orders", o.body(), &created)
	t := try{At: time.Since(h.start).Seconds(), Status: status}
	if err != nil {
		t.Error = err.Error()
		if len(t.Error) > 200 {
			t.Error = t.Error[:200]
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	o.Attempts = append(o.Attempts, t)
	switch {
	case err == nil:
		o.Ack, o.ID, o.Total = true, created.OrderID, created.TotalCents
		return true
	case status >= 400 && status < 500:
		o.Rejected = true
		return true
	}
	return false
}

// send places the orders open loop, each at its time whatever became of the
// ones before; one without an answer or with a 5xx is retried with its key
// a few times (0.2 s, 0.4 s, ... apart), then left for resolve.
func (h *history) send(ctx context.Context, st *stack, start time.Time) {
	h.start = start
	var wg sync.WaitGroup
	var acked atomic.Int64
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				st.log.printf("load: %d acknowledged", acked.Load())
			}
		}
	}()
	for _, o := range h.ops {
		if !sleep(ctx, time.Until(start.Add(time.Duration(o.Intended*float64(time.Second))))) {
			break
		}
		wg.Go(func() {
			for i := range 5 {
				if h.attempt(ctx, st, o) {
					if o.Ack {
						acked.Add(1)
					}
					return
				}
				if !sleep(ctx, time.Duration(i+1)*200*time.Millisecond) {
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
}

func (h *history) unresolved() int {
	n := 0
	for _, o := range h.ops {
		if !o.Ack && !o.Rejected {
			n++
		}
	}
	return n
}

// resolve retries, after heal, every POST that never got an answer, with
// its key, until it gets one or deadline passes: the key either returns the
// order an earlier attempt created or creates it now, so every order the
// system holds is in the history.
func (h *history) resolve(ctx context.Context, st *stack, deadline time.Time) {
	var wg sync.WaitGroup
	for _, o := range h.ops {
		if o.Ack || o.Rejected {
			continue
		}
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if h.attempt(ctx, st, o) {
					o.AckAfterHeal = o.Ack
					return
				}
				if !sleep(ctx, 500*time.Millisecond) {
					return
				}
			}
		})
	}
	wg.Wait()
}
