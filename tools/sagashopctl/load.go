package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadConfig is what one load run does: an open-loop arrival schedule of
// Rate orders a second for Duration, each of a scenario drawn from the mix,
// on fixtures of its own, then a drain and the invariants checked from
// outside over HTTP.
type loadConfig struct {
	URLs      serviceURLs
	Rate      float64       // orders per second offered
	Duration  time.Duration // how long orders are offered
	Drain     time.Duration // how long to wait for the last ones to end
	Unpaid    float64       // share of orders whose customer cannot pay
	OutStock  float64       // share of orders for a product with no stock
	Customers int           // paying customers (orders spread over them)
	SKUs      int           // products in stock (orders spread over them)
	Seed      uint64        // the scenario draw; printed, so a run repeats
	Procs     []string      // process names (/proc/<pid>/comm) whose CPU is reported
	JSON      string        // where to write the report as JSON ("" none)
	Progress  io.Writer     // a line a second while it runs (nil: none)
}

type serviceURLs struct{ Order, Payment, Inventory, Shipping, Email string }

// Scenarios of the mix, and what each must end as.
const (
	scenarioShip     = "ship"
	scenarioUnpaid   = "unpaid"
	scenarioOutStock = "out_of_stock"
)

// orderRecord is what the tool knows of one order it placed.
type orderRecord struct {
	Scenario string
	Customer string
	SKU      string
	Quantity int
	Intended time.Time // when the schedule said to send it
	Accepted time.Duration
	Key      string // the Idempotency-Key of its POST /orders
	Retries  int    // POSTs repeated with Key after no answer or a 5xx
	Status   int    // of POST /orders; 0: no answer
	ID       string
	Total    int64
	// From GET /orders/{id} after the drain.
	Final     string
	Reason    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// runLoad runs one load and writes its report to stdout. It fails when an
// invariant does not hold.
func runLoad(ctx context.Context, cfg loadConfig, stdout io.Writer) error {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second,
	}}
	api := &loadAPI{client: client, urls: cfg.URLs}
	run := "L" + strconv.FormatInt(time.Now().UnixMilli()%1e9, 36)
	fmt.Fprintf(stdout, "load %s: %.0f orders/s for %s, mix %.0f%% ship / %.0f%% unpaid / %.0f%% out of stock, seed %d\n",
		run, cfg.Rate, cfg.Duration, 100*(1-cfg.Unpaid-cfg.OutStock), 100*cfg.Unpaid, 100*cfg.OutStock, cfg.Seed)
	fx, err := setUpFixtures(ctx, api, run, cfg)
	if err != nil {
		return fmt.Errorf("fixtures: %w", err)
	}

	cpuBefore := sampleCPU(cfg.Procs)
	records := schedule(cfg, fx)
	terminalBase, err := api.terminalCount(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	send(ctx, api, cfg, records, start, terminalBase)
	accepted := 0
	for _, r := range records {
		if r.ID != "" {
			accepted++
		}
	}
	drainDeadline := time.Now().Add(cfg.Drain)
	for ctx.Err() == nil && time.Now().Before(drainDeadline) {
		n, err := api.terminalCount(ctx)
		if err == nil && n-terminalBase >= float64(accepted) {
			break
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	cpuAfter := sampleCPU(cfg.Procs)

	// Downstream effects (stock released, emails) may trail the order's own
	// end: give them a little longer than the drain.
	problems := check(ctx, api, fx, records, later(drainDeadline, time.Now().Add(30*time.Second)))
	rep := newReport(cfg, run, records, start, cpuAfter.minus(cpuBefore), problems)
	rep.print(stdout)
	if cfg.JSON != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(cfg.JSON, b, 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d invariant violations", len(problems))
	}
	return nil
}

// fixtures are a run's own products and customers, so runs never share
// state and the invariants can be checked exactly.
type fixtures struct {
	skus      []string // in stock
	oos       string   // no stock
	paying    []string
	unpaid    []string
	stock     int   // initial available units of each in-stock product
	price     int64 // of every product
	deposit   int64 // of every paying customer
	maxPerSKU int
}

func setUpFixtures(ctx context.Context, api *loadAPI, run string, cfg loadConfig) (*fixtures, error) {
	fx := &fixtures{stock: 1_000_000, price: 100, deposit: 100_000_000, oos: run + "-oos"}
	for i := range max(cfg.SKUs, 1) {
		fx.skus = append(fx.skus, fmt.Sprintf("%s-sku%d", run, i))
	}
	for i := range max(cfg.Customers, 1) {
		fx.paying = append(fx.paying, fmt.Sprintf("%s-c%d", run, i))
		fx.unpaid = append(fx.unpaid, fmt.Sprintf("%s-u%d", run, i))
	}
	seen, err := api.productUpdates(ctx)
	if err != nil {
		return nil, err
	}
	jobs := make([]func() error, 0, len(fx.skus)+1+len(fx.paying))
	for _, sku := range append(slices.Clone(fx.skus), fx.oos) {
		available := fx.stock
		if sku == fx.oos {
			available = 0
		}
		body := fmt.Sprintf(`{"name": "load product", "price_cents": %d, "available": %d}`, fx.price, available)
		jobs = append(jobs, func() error {
			_, err := api.do(ctx, http.MethodPut, api.urls.Inventory+"/products/"+sku, body, nil, http.StatusCreated)
			return err
		})
	}
	for _, c := range fx.paying {
		body := fmt.Sprintf(`{"amount_cents": %d}`, fx.deposit)
		jobs = append(jobs, func() error {
			_, err := api.do(ctx, http.MethodPost, api.urls.Payment+"/accounts/"+c+"/deposits", body, nil, http.StatusCreated)
			return err
		})
	}
	if err := parallel(32, jobs); err != nil {
		return nil, err
	}
	// Orders are priced from the order service's copy of the catalog, which
	// it learns from inventory's events.
	want := seen + float64(len(fx.skus)+1)
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := api.productUpdates(ctx)
		if err == nil && n >= want {
			return fx, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("the order service saw %.0f of %.0f product updates", n, want)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// schedule draws every order of the run: its scenario, customer and product,
// and the moment the open-loop schedule sends it.
func schedule(cfg loadConfig, fx *fixtures) []*orderRecord {
	n := int(cfg.Rate * cfg.Duration.Seconds())
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5a6a))
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	out := make([]*orderRecord, n)
	for i := range out {
		r := &orderRecord{Quantity: 1 + rng.IntN(3), Intended: time.Time{}.Add(time.Duration(i) * interval)}
		switch p := rng.Float64(); {
		case p < cfg.Unpaid:
			r.Scenario, r.Customer, r.SKU = scenarioUnpaid, fx.unpaid[rng.IntN(len(fx.unpaid))], fx.skus[rng.IntN(len(fx.skus))]
		case p < cfg.Unpaid+cfg.OutStock:
			r.Scenario, r.Customer, r.SKU = scenarioOutStock, fx.paying[rng.IntN(len(fx.paying))], fx.oos
		default:
			r.Scenario, r.Customer, r.SKU = scenarioShip, fx.paying[rng.IntN(len(fx.paying))], fx.skus[rng.IntN(len(fx.skus))]
		}
		r.Key = fmt.Sprintf("%s-o%d", r.Customer, i) // the customer's name holds the run's id
		out[i] = r
	}
	return out
}

// postAttempts bounds how often one order's POST is tried.
const postAttempts = 5

// send places the orders open-loop: each at its intended time, whatever
// happened to the ones before it, so a slow system cannot slow the offered
// rate and hide its backlog; latencies count from the intended time.

func send(ctx context.Context, api *loadAPI, cfg loadConfig, records []*orderRecord, start time.Time, terminalBase float64) {
	var wg sync.WaitGroup
	var sent, answered, failed atomic.Int64
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				n, _ := api.terminalCount(ctx)
				fmt.Fprintf(cfg.Progress, "%5.0fs sent %d answered %d failed %d terminal %.0f\n",
					time.Since(start).Seconds(), sent.Load(), answered.Load(), failed.Load(), n-terminalBase)
			}
		}
	}()
	for _, r := range records {
		r.Intended = start.Add(r.Intended.Sub(time.Time{}))
		if d := time.Until(r.Intended); d > 0 && !sleepCtx(ctx, d) {
			break
		}
		sent.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"customer_id": %q, "email": "%s@example.com", "items": [{"sku": %q, "quantity": %d}]}`,
				r.Customer, r.Customer, r.SKU, r.Quantity)
			var created struct {
				OrderID    string `json:"order_id"`
				TotalCents int64  `json:"total_cents"`
			}
			// A POST without an answer (a timeout) or with a 5xx may still
			// have created the order: a careful client asks again with the
			// same Idempotency-Key, which either returns that order or
			// creates it now, so every order the system holds is counted.
			hdr := http.Header{"Idempotency-Key": {r.Key}}
			var status int
			var err error
			for attempt := 0; ; attempt++ {
				status, err = api.doWith(ctx, hdr, http.MethodPost, api.urls.Order+"/orders", body, &created, http.StatusCreated)
				if err == nil || (status != 0 && status < 500) || attempt == postAttempts-1 || !sleepCtx(ctx, time.Duration(attempt+1)*200*time.Millisecond) {
					break
				}
				r.Retries++
			}
			r.Accepted, r.Status = time.Since(r.Intended), status
			answered.Add(1)
			if err != nil {
				failed.Add(1)
				return
			}
			r.ID, r.Total = created.OrderID, created.TotalCents
		}()
	}
	wg.Wait()
	close(stopProgress)
	<-progressDone
}

// check reads every order's end and the state of the fixtures, and returns
// every invariant that does not hold: each accepted order terminal with the
// outcome of its scenario, one shipment per shipped order and none for a
// cancelled one, one email of the right kind per order, every balance equal
// to its deposit less what shipped, every product's stock equal to its
// initial stock less what shipped, nothing left reserved.
func check(ctx context.Context, api *loadAPI, fx *fixtures, records []*orderRecord, deadline time.Time) []string {
	var mu sync.Mutex
	var problems []string
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	var jobs []func() error
	for _, r := range records {
		if r.ID == "" {
			report("order %s/%s not accepted: POST answered %d", r.Scenario, r.Customer, r.Status)
			continue
		}
		jobs = append(jobs, func() error { checkOrder(ctx, api, r, deadline, report); return nil })
	}
	_ = parallel(32, jobs)

	spent := map[string]int64{}
	shippedUnits := map[string]int{}
	for _, r := range records {
		if r.Final == "SHIPPED" {
			spent[r.Customer] += r.Total
			shippedUnits[r.SKU] += r.Quantity
		}
	}
	jobs = jobs[:0]
	for _, c := range fx.paying {
		jobs = append(jobs, func() error {
			var acc struct {
				BalanceCents int64 `json:"balance_cents"`
			}
			if _, err := api.do(ctx, http.MethodGet, api.urls.Payment+"/accounts/"+c, "", &acc, http.StatusOK); err != nil {
				report("account %s: %v", c, err)
			} else if acc.BalanceCents != fx.deposit-spent[c] {
				report("account %s: balance %d, want deposit %d - shipped %d", c, acc.BalanceCents, fx.deposit, spent[c])
			}
			return nil
		})
	}
	for _, sku := range append(slices.Clone(fx.skus), fx.oos) {
		jobs = append(jobs, func() error {
			want := fx.stock - shippedUnits[sku]
			if sku == fx.oos {
				want = 0
			}
			var p struct{ Available, Reserved int }
			ok := poll(ctx, deadline, func() bool {
				_, err := api.do(ctx, http.MethodGet, api.urls.Inventory+"/products/"+sku, "", &p, http.StatusOK)
				return err == nil && p.Available == want && p.Reserved == 0
			})
			if !ok {
				report("product %s: available %d reserved %d, want %d and 0", sku, p.Available, p.Reserved, want)
			}
			return nil
		})
	}
	_ = parallel(32, jobs)
	slices.Sort(problems)
	return problems
}

func checkOrder(ctx context.Context, api *loadAPI, r *orderRecord, deadline time.Time, report func(string, ...any)) {
	var o struct {
		Status    string    `json:"status"`
		Reason    string    `json:"reason"`
		CreatedAt time.Time `json:"created_at"`
		UpdatedAt time.Time `json:"updated_at"`
	}
	terminal := poll(ctx, deadline, func() bool {
		_, err := api.do(ctx, http.MethodGet, api.urls.Order+"/orders/"+r.ID, "", &o, http.StatusOK)
		return err == nil && (o.Status == "SHIPPED" || o.Status == "CANCELLED")
	})
	r.Final, r.Reason, r.CreatedAt, r.UpdatedAt = o.Status, o.Reason, o.CreatedAt, o.UpdatedAt
	if !terminal {
		report("order %s (%s): status %q at the deadline, want terminal", r.ID, r.Scenario, o.Status)
		return
	}
	wantStatus, wantReason, wantEmail := "SHIPPED", "", "order_shipped"
	switch r.Scenario {
	case scenarioUnpaid:
		wantStatus, wantReason, wantEmail = "CANCELLED", "payment_failed", "order_cancelled"
	case scenarioOutStock:
		wantStatus, wantReason, wantEmail = "CANCELLED", "out_of_stock", "order_cancelled"
	}
	if o.Status != wantStatus || o.Reason != wantReason {
		report("order %s (%s): %s %q, want %s %q", r.ID, r.Scenario, o.Status, o.Reason, wantStatus, wantReason)
	}
	wantShipment := http.StatusNotFound
	if o.Status == "SHIPPED" {
		wantShipment = http.StatusOK
	}
	if _, err := api.do(ctx, http.MethodGet, api.urls.Shipping+"/shipments/"+r.ID, "", nil, wantShipment); err != nil {
		report("order %s (%s, %s): shipment: %v", r.ID, r.Scenario, o.Status, err)
	}
	var emails []struct{ Kind string }
	ok := poll(ctx, deadline, func() bool {
		_, err := api.do(ctx, http.MethodGet, api.urls.Email+"/emails?order_id="+r.ID, "", &emails, http.StatusOK)
		return err == nil && len(emails) > 0
	})
	if !ok || len(emails) != 1 || emails[0].Kind != wantEmail {
		report("order %s (%s): emails %+v, want one %s", r.ID, r.Scenario, emails, wantEmail)
	}
}

// loadAPI sends the tool's requests.
type loadAPI struct {
	client *http.Client
	urls   serviceURLs
}

// do sends one request and decodes a JSON answer into out (if not nil); it
// returns the status, and an error unless the status is want.
func (a *loadAPI) do(ctx context.Context, method, url, body string, out any, want int) (int, error) {
	return a.doWith(ctx, nil, method, url, body, out, want)
}

// doWith is do with more request headers.
func (a *loadAPI) doWith(ctx context.Context, header http.Header, method, url, body string, out any, want int) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != want {
		return resp.StatusCode, fmt.Errorf("%s %s: %s, want %d: %s", method, url, resp.Status, want, bytes.TrimSpace(b[:min(len(b), 300)]))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return resp.StatusCode, nil
}

// terminalCount is the order service's saga_orders_total: orders that
// reached SHIPPED or CANCELLED since it started.
func (a *loadAPI) terminalCount(ctx context.Context) (float64, error) {
	return a.metric(ctx, a.urls.Order, "saga_orders_total", "")
}

// productUpdates is how many ProductUpdated events the order service has
// applied since it started.
func (a *loadAPI) productUpdates(ctx context.Context) (float64, error) {
	return a.metric(ctx, a.urls.Order, "consumer_messages_processed_total", `type="ProductUpdated"`)
}

// metric sums the samples of a metric on a service's /metrics whose line
// contains label.
func (a *loadAPI) metric(ctx context.Context, base, name, label string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") || !strings.Contains(line, label) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// parallel runs jobs on n goroutines and returns the first error.
func parallel(n int, jobs []func() error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				if err := jobs[i](); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	wg.Wait()
	return first
}

// poll calls cond every 50 ms until it holds or deadline passes (at least
// once).
func poll(ctx context.Context, deadline time.Time, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 50*time.Millisecond) {
			return false
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
