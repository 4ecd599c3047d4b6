package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Network faults between the services and PostgreSQL, through Toxiproxy run
// in this process: the services' DATABASE_URL points at the proxy, which
// forwards to the private cluster (the tool's own checks connect directly).
//
// Kafka is not proxied: a client connects to the address the broker
// advertises after bootstrap, and tools/infra.sh advertises the port the
// broker listens on; a proxy in front of Kafka needs a broker advertising
// the proxy's port, which infra.sh does not offer yet.
const (
	faultNetLatency = "net-latency" // every byte from PostgreSQL 150-450 ms late
	faultNetStall   = "net-stall"   // nothing from PostgreSQL, each connection closed after 2-4 s
	faultNetReset   = "net-reset"   // each connection reset (RST) on its next data
)

var netKinds = []string{faultNetLatency, faultNetStall, faultNetReset}

// netProxy is the PostgreSQL proxy.
type netProxy struct {
	proxy *toxiproxy.Proxy
	addr  string
}

func startNetProxy(upstream string) (*netProxy, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "postgres", addr, upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("toxiproxy %s -> %s: %w", addr, upstream, err)
	}
	return &netProxy{proxy: p, addr: addr}, nil
}

func (n *netProxy) port() int {
	_, p, _ := strings.Cut(n.addr, ":")
	port, _ := strconv.Atoi(p)
	return port
}

// toxic returns the JSON of the toxic of a network fault kind; param is
// the kind's number of milliseconds (latency, or a stall's close timeout).
func toxicJSON(name, kind string, param int) (string, error) {
	switch kind {
	case faultNetLatency:
		return fmt.Sprintf(`{"name": %q, "type": "latency", "stream": "downstream", "attributes": {"latency": %d, "jitter": 100}}`, name, param), nil
	case faultNetStall:
		return fmt.Sprintf(`{"name": %q, "type": "timeout", "stream": "downstream", "attributes": {"timeout": %d}}`, name, param), nil
	case faultNetReset:
		return fmt.Sprintf(`{"name": %q, "type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}}`, name), nil
	}
	return "", fmt.Errorf("unknown network fault %q", kind)
}

// add puts a toxic on the proxy; remove takes it off.
func (n *netProxy) add(name, kind string, param int) error {
	js, err := toxicJSON(name, kind, param)
	if err != nil {
		return err
	}
	_, err = n.proxy.Toxics.AddToxicJson(strings.NewReader(js))
	return err
}

func (n *netProxy) remove(ctx context.Context, name string) error {
	return n.proxy.Toxics.RemoveToxic(ctx, name)
}

func (n *netProxy) stop() { n.proxy.Stop() }
