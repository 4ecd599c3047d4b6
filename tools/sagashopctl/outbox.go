package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// sagashopctl outbox: the outbox dead letters of one service, the events its
// relay set aside because Kafka refused them for good (pkg/outbox), over the
// service's /admin/outbox endpoints.
//
//	sagashopctl outbox list    -service order [-limit N] [-json]
//	sagashopctl outbox requeue -service order ID...

const outboxUsage = "usage: sagashopctl outbox list -service NAME [-url URL] [-limit N] [-json] | outbox requeue -service NAME [-url URL] ID..."

// outboxServices are the services' addresses as make run starts them.
var outboxServices = map[string]string{
	"order": "http://127.0.0.1:8081", "payment": "http://127.0.0.1:8082", "inventory": "http://127.0.0.1:8083",
	"shipping": "http://127.0.0.1:8084", "email": "http://127.0.0.1:8085",
}

// outboxDeadLetter is one dead letter as GET /admin/outbox/dead-letters
// answers it.
type outboxDeadLetter struct {
	ID        int64     `json:"id"`
	EventID   string    `json:"event_id"`
	Type      string    `json:"type"`
	Topic     string    `json:"topic"`
	Key       string    `json:"key"`
	Bytes     int       `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
	FailedAt  time.Time `json:"failed_at"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error"`
}

func outboxCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "requeue") {
		return errors.New(outboxUsage)
	}
	verb := args[0]
	fs := flag.NewFlagSet("outbox "+verb, flag.ContinueOnError)
	service := fs.String("service", "", "the service whose outbox it is: order, payment, inventory, shipping or email")
	base := fs.String("url", "", "the service's base URL (default: its make run address, http://127.0.0.1:808N)")
	limit := fs.Int("limit", 100, "at most this many dead letters, oldest first (1 to 1000)")
	asJSON := fs.Bool("json", false, "print the dead letters as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *base == "" {
		*base = outboxServices[*service]
	}
	if *base == "" {
		return fmt.Errorf("-service %q: want one of order, payment, inventory, shipping, email (or -url)\n%s", *service, outboxUsage)
	}
	*base = strings.TrimRight(*base, "/")
	client := &http.Client{Timeout: 10 * time.Second}
	switch verb {
	case "list":
		if fs.NArg() > 0 {
			return fmt.Errorf("outbox list takes no arguments\n%s", outboxUsage)
		}
		var body struct {
			DeadLetters []outboxDeadLetter `json:"dead_letters"`
		}
		if err := outboxDo(ctx, client, http.MethodGet, *base+"/admin/outbox/dead-letters?limit="+strconv.Itoa(*limit), &body); err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(body.DeadLetters)
		}
		return writeOutboxTable(stdout, body.DeadLetters)
	default:
		if fs.NArg() == 0 {
			return fmt.Errorf("outbox requeue: which dead letters? (ids from outbox list)\n%s", outboxUsage)
		}
		var ids []int64
		for _, a := range fs.Args() {
			id, err := strconv.ParseInt(a, 10, 64)
			if err != nil || id < 1 {
				return fmt.Errorf("outbox requeue: %q is no dead letter id (a positive integer)", a)
			}
			ids = append(ids, id)
		}
		for _, id := range ids {
			var body struct {
				OutboxID int64 `json:"outbox_id"`
			}
			url := fmt.Sprintf("%s/admin/outbox/dead-letters/%d/requeue", *base, id)
			if err := outboxDo(ctx, client, http.MethodPost, url, &body); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "requeued dead letter %d as outbox row %d\n", id, body.OutboxID)
		}
		return nil
	}
}

// outboxDo sends one request and decodes a 200 answer into v; any other
// answer is an error with the problem's title and detail.
func outboxDo(ctx context.Context, client *http.Client, method, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var p struct{ Title, Detail string }
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &p) == nil && (p.Title != "" || p.Detail != "") {
			msg = strings.TrimSpace(p.Title + ": " + p.Detail)
		}
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, msg)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: decode the answer: %w", method, url, err)
	}
	return nil
}

func writeOutboxTable(w io.Writer, letters []outboxDeadLetter) error {
	if len(letters) == 0 {
		_, err := fmt.Fprintln(w, "no outbox dead letters")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFAILED AT\tREASON\tTOPIC\tTYPE\tKEY\tBYTES\tERROR")
	for _, l := range letters {
		errText := strings.Join(strings.Fields(l.Error), " ")
		if len(errText) > 80 {
			errText = errText[:77] + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", l.ID, l.FailedAt.UTC().Format(time.RFC3339), l.Reason, l.Topic, l.Type, l.Key, l.Bytes, errText)
	}
	return tw.Flush()
}
