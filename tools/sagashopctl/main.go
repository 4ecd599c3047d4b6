// Command sagashopctl is Sagashop's small operations tool. The service
// images carry it, since their runtime image has no shell, curl or wget, and
// make run builds it:
//
//	sagashopctl health   exit 0 when the service in this container answers
//	                     GET /readyz with 200 (the compose healthcheck)
//	sagashopctl load     an open-loop load of the realistic order mix against
//	                     a running system, with its own fixtures; then every
//	                     invariant checked from outside, latency percentiles
//	                     per outcome and CPU per order (see load.go)
//	sagashopctl dlq      the consumers' dead letters (<group>.dlq topics):
//	                     list them (filters: group, type, reason, order id,
//	                     time), show one, replay them to their original
//	                     topics (see dlq.go and pkg/deadletter)
//	sagashopctl outbox   a service's outbox dead letters (events Kafka
//	                     refused for good): list them, requeue them (see
//	                     outbox.go and pkg/outbox)
//	sagashopctl seed     the demo data (make run and compose's seed service):
//	                     products mug, tshirt and poster; customers alice
//	                     (100.00) and bob (5.00), deposited only when the
//	                     account does not exist yet
//
// It speaks HTTP to the services (the standard library) and, for dead
// letters, Kafka through the root module's pkg/deadletter; it reads the same
// variables as the services (HTTP_ADDR, KAFKA_BROKERS), so it needs no
// configuration of its own in compose.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sagashopctl:", err)
		// Usage errors say so (exit status 2, as flag's own errors).
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			os.Exit(coded.ExitCode())
		}
		os.Exit(1)
	}
}

const usage = "usage: sagashopctl health [-url URL] | seed [-inventory URL] [-payment URL] [-timeout D] | load [-rate N] [-duration D] ... (load -h) | dlq list|show|replay ... (dlq -h) | outbox list|requeue -service NAME ..."

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "health":
		fs := flag.NewFlagSet("health", flag.ContinueOnError)
		url := fs.String("url", "", "readiness URL (default: /readyz on the port of HTTP_ADDR, on 127.0.0.1)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *url == "" {
			u, err := readyURL(getenv("HTTP_ADDR"))
			if err != nil {
				return err
			}
			*url = u
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return health(ctx, *url)
	case "seed":
		fs := flag.NewFlagSet("seed", flag.ContinueOnError)
		inventory := fs.String("inventory", "http://inventory:8083", "inventory service base URL")
		payment := fs.String("payment", "http://payment:8082", "payment service base URL")
		timeout := fs.Duration("timeout", time.Minute, "give up after this long")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return seed(ctx, *inventory, *payment, stdout)
	case "dlq":
		return dlq(ctx, args[1:], getenv, stdout)
	case "outbox":
		return outboxCmd(ctx, args[1:], stdout)
	case "load":
		cfg, err := parseLoadFlags(args[1:])
		if err != nil {
			return err
		}
		return runLoad(ctx, cfg, stdout)
	default:
		return errors.New(usage)
	}
}

// parseLoadFlags reads the flags of sagashopctl load. The services' URLs
// default to make run's addresses.
func parseLoadFlags(args []string) (loadConfig, error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg loadConfig
	host := "http://127.0.0.1:"
	fs.StringVar(&cfg.URLs.Order, "order", host+"8081", "order service base URL")
	fs.StringVar(&cfg.URLs.Payment, "payment", host+"8082", "payment service base URL")
	fs.StringVar(&cfg.URLs.Inventory, "inventory", host+"8083", "inventory service base URL")
	fs.StringVar(&cfg.URLs.Shipping, "shipping", host+"8084", "shipping service base URL")
	fs.StringVar(&cfg.URLs.Email, "email", host+"8085", "email service base URL")
	fs.Float64Var(&cfg.Rate, "rate", 50, "orders offered per second (open loop)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long orders are offered")
	fs.DurationVar(&cfg.Drain, "drain", 60*time.Second, "how long to wait afterwards for every order to end")
	fs.Float64Var(&cfg.Unpaid, "unpaid", 0.1, "share of orders whose customer cannot pay (end CANCELLED payment_failed)")
	fs.Float64Var(&cfg.OutStock, "out-of-stock", 0.1, "share of orders for a product with no stock (paid, refunded, CANCELLED out_of_stock)")
	fs.IntVar(&cfg.Customers, "customers", 200, "customers the orders are spread over")
	fs.IntVar(&cfg.SKUs, "skus", 50, "products the orders are spread over")
	seed := fs.Uint64("seed", 0, "seed of the scenario draw (0: from the clock; printed either way)")
	procs := fs.String("procs", "order,payment,inventory,shipping,email,postgres,java,jaeger",
		"process names (as in /proc/PID/comm) whose CPU per order is reported")
	fs.StringVar(&cfg.JSON, "json", "", "also write the report as JSON to this file")
	quiet := fs.Bool("quiet", false, "no progress line every second")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var problems []error
	if cfg.Rate <= 0 || cfg.Duration <= 0 || cfg.Rate*cfg.Duration.Seconds() < 1 {
		problems = append(problems, errors.New("-rate and -duration must make at least one order"))
	}
	if cfg.Unpaid < 0 || cfg.OutStock < 0 || cfg.Unpaid+cfg.OutStock > 1 {
		problems = append(problems, errors.New("-unpaid and -out-of-stock must be shares from 0 to 1 that add up to at most 1"))
	}
	if cfg.Customers < 1 || cfg.SKUs < 1 {
		problems = append(problems, errors.New("-customers and -skus must be at least 1"))
	}
	cfg.Seed = *seed
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	for _, p := range strings.Split(*procs, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Procs = append(cfg.Procs, p)
		}
	}
	if !*quiet {
		cfg.Progress = os.Stderr
	}
	return cfg, errors.Join(problems...)
}

// readyURL is the readiness endpoint of the service listening on addr
// (HTTP_ADDR: ":8081", "0.0.0.0:8081", "[::]:8081").
func readyURL(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("HTTP_ADDR is not set; pass -url")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("HTTP_ADDR %q: want host:port or :port", addr)
	}
	return "http://127.0.0.1:" + port + "/readyz", nil
}

func health(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// The demo data: the one copy of it (make run and compose both seed with this).
var (
	products = []struct {
		sku, name        string
		price, available int
	}{
		{"mug", "Mug", 1299, 50},
		{"tshirt", "T-shirt", 2500, 20},
		{"poster", "Poster", 900, 3},
	}
	customers = []struct {
		id      string
		deposit int
	}{
		{"alice", 10000},
		{"bob", 500},
	}
)

// seed puts the products and opens the customers' accounts with a first
// deposit only when the account does not exist, so a second run does not
// top them up. A product that exists keeps its stock: the PUT with the
// demo's stock is refused (428) once orders have changed it, and the
// product's name and price are put alone. Either way each product gets one
// PUT that goes through, so one ProductUpdated each (tools/run.sh waits for
// them). Each request is retried until ctx ends, in case a service is not
// ready yet.
func seed(ctx context.Context, inventory, payment string, stdout io.Writer) error {
	for _, p := range products {
		url := inventory + "/products/" + p.sku
		body := fmt.Sprintf(`{"name": %q, "price_cents": %d, "available": %d}`, p.name, p.price, p.available)
		status, err := call(ctx, http.MethodPut, url, body, http.StatusOK, http.StatusCreated, http.StatusPreconditionRequired)
		if err != nil {
			return err
		}
		if status == http.StatusPreconditionRequired {
			body = fmt.Sprintf(`{"name": %q, "price_cents": %d}`, p.name, p.price)
			if _, err := call(ctx, http.MethodPut, url, body, http.StatusOK); err != nil {
				return err
			}
		}
	}
	for _, c := range customers {
		status, err := call(ctx, http.MethodGet, payment+"/accounts/"+c.id, "", http.StatusOK, http.StatusNotFound)
		if err != nil {
			return err
		}
		if status == http.StatusOK {
			continue
		}
		body := fmt.Sprintf(`{"amount_cents": %d}`, c.deposit)
		if _, err := call(ctx, http.MethodPost, payment+"/accounts/"+c.id+"/deposits", body, http.StatusOK, http.StatusCreated); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, "seeded: products mug, tshirt, poster; customers alice (100.00) and bob (5.00)")
	return nil
}

// call sends one request, retrying connection errors and 5xx answers every
// 500 ms until ctx ends, and returns the status when it is one of want.
func call(ctx context.Context, method, url, body string, want ...int) (int, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		var msg string
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			for _, w := range want {
				if resp.StatusCode == w {
					return w, nil
				}
			}
			msg = fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(b)))
			if resp.StatusCode < 500 {
				return 0, fmt.Errorf("%s %s: %s", method, url, msg)
			}
		} else {
			msg = err.Error()
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s %s: gave up: %s", method, url, msg)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
