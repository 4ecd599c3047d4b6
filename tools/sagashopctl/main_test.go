package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadyURL(t *testing.T) {
	tests := []struct {
		addr, want string
		wantErr    bool
	}{
		{":8081", "http://127.0.0.1:8081/readyz", false},
		{"0.0.0.0:8082", "http://127.0.0.1:8082/readyz", false},
		{"[::]:8083", "http://127.0.0.1:8083/readyz", false},
		{"", "", true},
		{"8084", "", true},
	}
	for _, tt := range tests {
		got, err := readyURL(tt.addr)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("readyURL(%q) = %q, %v; want %q, error %v", tt.addr, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestHealth(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := run(ctx, []string{"health", "-url", srv.URL + "/readyz"}, func(string) string { return "" }, io.Discard); err != nil {
		t.Fatalf("ready service: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := run(ctx, []string{"health", "-url", srv.URL + "/readyz"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("a 503 passed the healthcheck")
	}
	if err := run(ctx, []string{"health"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("no HTTP_ADDR and no -url passed")
	}
	if err := run(ctx, []string{"bogus"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("unknown command accepted")
	}
}

// fakeServices stands in for inventory and payment at the process edge:
// it records requests and knows which accounts exist, and the stock of the
// products put, which, as inventory does, a PUT without If-Match may not
// change (428).
type fakeServices struct {
	mu       sync.Mutex
	requests []string
	accounts map[string]bool
	stock    map[string]int
	failures int // answer 503 this many times first
}

func (f *fakeServices) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.requests = append(f.requests, r.Method+" "+r.URL.Path+" "+string(body))
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/products/"):
		var p struct{ Available *int }
		_ = json.Unmarshal(body, &p)
		sku := strings.TrimPrefix(r.URL.Path, "/products/")
		stock, exists := f.stock[sku]
		switch {
		case !exists && p.Available != nil:
			f.stock[sku] = *p.Available
			w.WriteHeader(http.StatusCreated)
		case !exists:
			w.WriteHeader(http.StatusUnprocessableEntity)
		case p.Available != nil && *p.Available != stock && r.Header.Get("If-Match") == "":
			w.WriteHeader(http.StatusPreconditionRequired)
		default:
			if p.Available != nil {
				f.stock[sku] = *p.Available
			}
		}
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/accounts/"):
		if !f.accounts[strings.TrimPrefix(r.URL.Path, "/accounts/")] {
			w.WriteHeader(http.StatusNotFound)
		}
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/deposits"):
		f.accounts[strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/accounts/"), "/deposits")] = true
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

func TestSeedIsIdempotentAndWaitsForServices(t *testing.T) {
	fake := &fakeServices{accounts: map[string]bool{"bob": true}, stock: map[string]int{}, failures: 2}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var out bytes.Buffer
	args := []string{"seed", "-inventory", srv.URL, "-payment", srv.URL, "-timeout", "10s"}
	start := time.Now()
	if err := run(context.Background(), args, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Error("the 503s were not retried after a pause")
	}
	deposits := 0
	for _, r := range fake.requests {
		if strings.Contains(r, "/deposits") {
			deposits++
			if !strings.Contains(r, "/accounts/alice/") || !strings.Contains(r, `"amount_cents": 10000`) {
				t.Errorf("unexpected deposit %q", r)
			}
		}
	}
	if deposits != 1 {
		t.Fatalf("%d deposits, want 1 (bob's account exists): %q", deposits, fake.requests)
	}
	if !strings.Contains(out.String(), "seeded") {
		t.Errorf("output %q", out.String())
	}
	// A second run tops nobody up.
	fake.requests = nil
	if err := run(context.Background(), args, func(string) string { return "" }, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, r := range fake.requests {
		if strings.Contains(r, "/deposits") {
			t.Fatalf("second seed deposited: %q", r)
		}
	}

	// Orders took some mugs: a third run keeps the stock as it is, and
	// still puts every product (one ProductUpdated each).
	fake.stock["mug"] = 48
	fake.requests = nil
	if err := run(context.Background(), args, func(string) string { return "" }, io.Discard); err != nil {
		t.Fatal(err)
	}
	if fake.stock["mug"] != 48 || fake.stock["tshirt"] != 20 || fake.stock["poster"] != 3 {
		t.Fatalf("stock after a seed of a used catalog: %v", fake.stock)
	}
	if want := `PUT /products/mug {"name": "Mug", "price_cents": 1299}`; !slices.Contains(fake.requests, want) {
		t.Fatalf("requests %q lack %q", fake.requests, want)
	}
}

func TestSeedStopsOnAClientError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
	}))
	defer srv.Close()
	args := []string{"seed", "-inventory", srv.URL, "-payment", srv.URL, "-timeout", "10s"}
	if err := run(context.Background(), args, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "422") {
		t.Fatalf("err = %v, want the 422", err)
	}
}
