package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// jaegerURL is the local stack's Jaeger query API; override with JAEGER_QUERY_URL.
func jaegerURL() string {
	if u := os.Getenv("JAEGER_QUERY_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:16686"
}

type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// traceSummary is what the trace assertions and the test log report.
type traceSummary struct {
	spans    int
	depth    int
	services []string
}

// assertOrderTrace finds the trace of the order's POST /orders in Jaeger by
// the order.id tag and checks that it holds spans from every one of
// services, and that every consumer span descends from the HTTP request span.
func (s *stack) assertOrderTrace(orderID string, services ...string) traceSummary {
	t := s.t
	t.Helper()
	q := url.Values{
		"service":   {"order"},
		"operation": {"POST /orders"},
		"tags":      {`{"order.id":"` + orderID + `"}`},
		"lookback":  {"1h"},
		"limit":     {"20"},
	}
	var traces []jaegerTrace
	var last string
	ok := func() bool {
		resp, err := http.Get(jaegerURL() + "/api/traces?" + q.Encode())
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Data []jaegerTrace `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			last = err.Error()
			return false
		}
		traces = body.Data
		if len(traces) != 1 {
			last = "traces found: " + strconv.Itoa(len(traces))
			return false
		}
		got := traceServices(traces[0])
		for _, want := range services {
			if !slices.Contains(got, want) {
				last = "services so far: " + strings.Join(got, ",")
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no single trace for order %s with spans from %v in Jaeger at %s (is it running? `make infra-up`): %s",
				orderID, services, jaegerURL(), last)
		}
		time.Sleep(250 * time.Millisecond)
	}

	tr := traces[0]
	parent := map[string]string{}
	var root string
	for _, sp := range tr.Spans {
		for _, r := range sp.References {
			if r.RefType == "CHILD_OF" {
				parent[sp.SpanID] = r.SpanID
			}
		}
		if sp.OperationName == "POST /orders" && tag(sp.Tags, "span.kind") == "server" {
			root = sp.SpanID
		}
	}
	if root == "" {
		t.Fatalf("trace %s has no server span POST /orders", tr.TraceID)
	}
	depthOf := func(id string) (int, bool) {
		d := 0
		for id != "" {
			if id == root {
				return d, true
			}
			id = parent[id]
			d++
			if d > 1000 {
				break
			}
		}
		return d, false
	}
	maxDepth, consumers := 0, 0
	for _, sp := range tr.Spans {
		d, under := depthOf(sp.SpanID)
		if under && d > maxDepth {
			maxDepth = d
		}
		switch tag(sp.Tags, "span.kind") {
		case "consumer":
			consumers++
			if !under {
				t.Errorf("consumer span %s (%s) is not a descendant of POST /orders", sp.OperationName, tr.Processes[sp.ProcessID].ServiceName)
			}
		}
		if tag(sp.Tags, "order.id") != orderID {
			t.Errorf("span %s (%s) lacks order.id=%s", sp.OperationName, tr.Processes[sp.ProcessID].ServiceName, orderID)
		}
	}
	if consumers == 0 {
		t.Errorf("trace %s has no consumer spans", tr.TraceID)
	}
	sum := traceSummary{spans: len(tr.Spans), depth: maxDepth, services: traceServices(tr)}
	t.Logf("trace %s: %d spans, depth %d, services %v", tr.TraceID, sum.spans, sum.depth, sum.services)
	return sum
}

func traceServices(tr jaegerTrace) []string {
	seen := map[string]bool{}
	for _, sp := range tr.Spans {
		seen[tr.Processes[sp.ProcessID].ServiceName] = true
	}
	var out []string
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func tag(tags []struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}, key string) string {
	for _, t := range tags {
		if t.Key == key {
			if s, ok := t.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}
