package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

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
// services, that every consumer span descends from the HTTP request span and
// that every span carries order.id. Five exporters flush at different
// moments, so the checks are polled until they hold or time runs out.
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
	var sum traceSummary
	var problems []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var tr jaegerTrace
		tr, problems = fetchTrace(s.infra.JaegerQueryURL(), q)
		if len(problems) == 0 {
			sum, problems = checkTrace(tr, orderID, services)
			if len(problems) == 0 {
				t.Logf("trace %s: %d spans, depth %d, services %v", tr.TraceID, sum.spans, sum.depth, sum.services)
				return sum
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace of order %s in Jaeger at %s (is it running? `make infra-up`):\n%s",
				orderID, s.infra.JaegerQueryURL(), strings.Join(problems, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func fetchTrace(jaeger string, q url.Values) (jaegerTrace, []string) {
	resp, err := http.Get(jaeger + "/api/traces?" + q.Encode())
	if err != nil {
		return jaegerTrace{}, []string{err.Error()}
	}
	defer resp.Body.Close()
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return jaegerTrace{}, []string{err.Error()}
	}
	if len(body.Data) != 1 {
		return jaegerTrace{}, []string{"traces found: " + strconv.Itoa(len(body.Data)) + ", want 1"}
	}
	return body.Data[0], nil
}

// checkTrace lists what is wrong with tr: missing services, consumer spans
// outside the request's tree, spans without order.id.
func checkTrace(tr jaegerTrace, orderID string, services []string) (traceSummary, []string) {
	var problems []string
	got := traceServices(tr)
	for _, want := range services {
		if !slices.Contains(got, want) {
			problems = append(problems, "no spans from "+want+" (have "+strings.Join(got, ",")+")")
		}
	}
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
		return traceSummary{}, append(problems, "no server span POST /orders")
	}
	depthOf := func(id string) (int, bool) {
		for d := 0; id != "" && d < 1000; d++ {
			if id == root {
				return d, true
			}
			id = parent[id]
		}
		return 0, false
	}
	maxDepth, consumers := 0, 0
	for _, sp := range tr.Spans {
		service := tr.Processes[sp.ProcessID].ServiceName
		d, under := depthOf(sp.SpanID)
		if under && d > maxDepth {
			maxDepth = d
		}
		if tag(sp.Tags, "span.kind") == "consumer" {
			consumers++
			if !under {
				problems = append(problems, "consumer span "+sp.OperationName+" ("+service+") is not a descendant of POST /orders")
			}
		}
		if tag(sp.Tags, "order.id") != orderID {
			problems = append(problems, "span "+sp.OperationName+" ("+service+") lacks order.id")
		}
	}
	if consumers == 0 {
		problems = append(problems, "no consumer spans")
	}
	return traceSummary{spans: len(tr.Spans), depth: maxDepth, services: got}, problems
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
