package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/deadletter"
)

const dlqUsage = `usage: sagashopctl dlq list [filters] [--json]
       sagashopctl dlq show <dlq-topic>/<partition>/<offset> [--json]
       sagashopctl dlq replay <position>... | --all [filters] [--dry-run]
filters: --group G --type T --reason R --order ID --since T --until T
         (times: RFC 3339, a date 2006-01-02, or a duration ago: 90m, 2h)
every command: --brokers host:port,... (default KAFKA_BROKERS, else 127.0.0.1:9092)`

// dlqUsageError is a command line that cannot be run; main exits with 2 for it.
type dlqUsageError struct{ err error }

func (e dlqUsageError) Error() string { return e.err.Error() + "\n" + dlqUsage }
func (e dlqUsageError) Unwrap() error { return e.err }
func (e dlqUsageError) ExitCode() int { return 2 }

func dlqUsagef(format string, args ...any) error { return dlqUsageError{fmt.Errorf(format, args...)} }

// dlqCommand is a parsed `sagashopctl dlq` command line.
type dlqCommand struct {
	verb      string // list, show, replay
	brokers   []string
	filter    deadletter.Filter
	filtered  bool // a filter flag was given
	positions []deadletter.Position
	all       bool
	dryRun    bool
	json      bool
}

// parseDLQ reads the arguments after "dlq". Flags may come before, between
// or after the positions. now anchors durations given to --since/--until.
func parseDLQ(args []string, getenv func(string) string, now time.Time) (dlqCommand, error) {
	if len(args) == 0 {
		return dlqCommand{}, dlqUsagef("dlq: no command")
	}
	c := dlqCommand{verb: args[0]}
	fs := flag.NewFlagSet("dlq "+c.verb, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	brokers := fs.String("brokers", "", "Kafka brokers, comma-separated (default KAFKA_BROKERS, else 127.0.0.1:9092)")
	var since, until string
	filterFlags := func() {
		fs.StringVar(&c.filter.Group, "group", "", "consumer group (reads only <group>.dlq)")
		fs.StringVar(&c.filter.Type, "type", "", "event type")
		fs.StringVar(&c.filter.Reason, "reason", "", "dead-letter reason (decode, handler, max_attempts, unknown_version, unexpected_source)")
		fs.StringVar(&c.filter.OrderID, "order", "", "order id (the event's subject, else its key)")
		fs.StringVar(&since, "since", "", "failed at or after")
		fs.StringVar(&until, "until", "", "failed before")
	}
	switch c.verb {
	case "list":
		filterFlags()
		fs.BoolVar(&c.json, "json", false, "JSON, one letter per line, instead of a table")
	case "show":
		fs.BoolVar(&c.json, "json", false, "JSON instead of text")
	case "replay":
		filterFlags()
		fs.BoolVar(&c.all, "all", false, "replay every letter the filters select")
		fs.BoolVar(&c.dryRun, "dry-run", false, "print what would be replayed, replay nothing")
	default:
		return c, dlqUsagef("dlq: unknown command %q", c.verb)
	}
	rest, err := dlqParseFlags(fs, args[1:])
	if err != nil {
		return c, dlqUsagef("dlq %s: %v", c.verb, err)
	}
	var problems []error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "group", "type", "reason", "order", "since", "until":
			c.filtered = true
		}
	})
	if c.filter.Since, err = dlqParseTime(since, now); err != nil {
		problems = append(problems, fmt.Errorf("--since: %w", err))
	}
	if c.filter.Until, err = dlqParseTime(until, now); err != nil {
		problems = append(problems, fmt.Errorf("--until: %w", err))
	}
	if err := c.filter.Validate(); err != nil {
		problems = append(problems, err)
	}
	for _, a := range rest {
		p, err := deadletter.ParsePosition(a)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		c.positions = append(c.positions, p)
	}
	switch {
	case c.verb == "list" && len(rest) > 0:
		problems = append(problems, fmt.Errorf("list takes no positions (got %q); filter with --group, --order, ...", rest))
	case c.verb == "show" && len(rest) != 1:
		problems = append(problems, fmt.Errorf("show takes one position, got %d", len(rest)))
	case c.verb == "replay" && c.all && len(rest) > 0:
		problems = append(problems, errors.New("replay takes positions or --all, not both"))
	case c.verb == "replay" && !c.all && len(rest) == 0:
		problems = append(problems, errors.New("replay needs positions, or --all with filters"))
	case c.verb == "replay" && !c.all && c.filtered:
		problems = append(problems, errors.New("filters select letters only with --all"))
	}
	c.brokers = dlqBrokers(*brokers, getenv)
	if len(c.brokers) == 0 {
		problems = append(problems, errors.New("--brokers: empty"))
	}
	if err := errors.Join(problems...); err != nil {
		return c, dlqUsageError{fmt.Errorf("dlq %s: %w", c.verb, err)}
	}
	return c, nil
}

// dlqParseFlags parses flags wherever they are among args and returns
// the other arguments.
func dlqParseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		if args[0] == "--" {
			return append(rest, args[1:]...), nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

// dlqParseTime reads an RFC 3339 time, a date (midnight UTC), or a duration
// before now; "" is the zero time.
func dlqParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (2026-12-02T03:00:00Z), a date (2026-12-02) or a duration ago (90m)", s)
}

func dlqBrokers(flagValue string, getenv func(string) string) []string {
	v := flagValue
	if v == "" {
		v = getenv("KAFKA_BROKERS")
	}
	if v == "" {
		v = "127.0.0.1:9092"
	}
	var out []string
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// dlq runs `sagashopctl dlq ...`.
func dlq(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c, err := parseDLQ(args, getenv, time.Now())
	if err != nil {
		return err
	}
	switch c.verb {
	case "list":
		letters, err := deadletter.List(ctx, c.brokers, c.filter)
		if err != nil {
			return err
		}
		if c.json {
			return writeDLQJSON(stdout, letters)
		}
		return writeDLQTable(stdout, letters)
	case "show":
		l, err := deadletter.Get(ctx, c.brokers, c.positions[0])
		if err != nil {
			return err
		}
		if c.json {
			return writeDLQJSON(stdout, []deadletter.Letter{l})
		}
		return writeDLQLetter(stdout, l)
	default:
		return dlqReplay(ctx, c, stdout)
	}
}

// dlqReplay replays the letters at c.positions (all of them or none, if one
// is missing or not replayable), or every replayable letter c.filter selects
// with --all, and prints each. A letter is replayed once however many
// copies of it the dead-letter topic holds (deadletter.List folds them into
// one; of positions that are copies of one letter, the first is replayed).
func dlqReplay(ctx context.Context, c dlqCommand, stdout io.Writer) error {
	var letters []deadletter.Letter
	if c.all {
		all, err := deadletter.List(ctx, c.brokers, c.filter)
		if err != nil {
			return err
		}
		for _, l := range all {
			if _, err := deadletter.Message(l, time.Now()); err != nil {
				fmt.Fprintf(stdout, "skipped  %s: %v\n", l.Position, err)
				continue
			}
			letters = append(letters, l)
		}
	} else {
		first := map[deadletter.Origin]deadletter.Position{}
		for _, p := range c.positions {
			l, err := deadletter.Get(ctx, c.brokers, p)
			if err != nil {
				return fmt.Errorf("nothing replayed: %w", err)
			}
			if _, err := deadletter.Message(l, time.Now()); err != nil {
				return fmt.Errorf("nothing replayed: %w", err)
			}
			o, _ := l.Origin()
			if f, seen := first[o]; seen {
				fmt.Fprintf(stdout, "skipped  %s: a copy of %s (both dead-lettered %s)\n", l.Position, f, o.Position)
				continue
			}
			first[o] = l.Position
			letters = append(letters, l)
		}
	}
	verb := "replayed"
	if c.dryRun {
		verb = "would replay"
	} else if len(letters) > 0 {
		w := broker.NewWriter(c.brokers)
		err := deadletter.Replay(ctx, w, letters...)
		if cerr := w.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close writer: %w", cerr)
		}
		if err != nil {
			return err
		}
	}
	for _, l := range letters {
		copies := ""
		if l.Copies > 1 {
			copies = fmt.Sprintf(", once for its %d copies", l.Copies)
		}
		fmt.Fprintf(stdout, "%s %s -> %s (%s, order %s, replay %d%s)\n", verb, l.Position, l.Original.Topic, dlqOr(l.EventType, "?"),
			dlqOr(l.OrderID, "?"), l.ReplayCount+1, copies)
	}
	fmt.Fprintf(stdout, "%d dead letters %s\n", len(letters), verb)
	return nil
}

func dlqOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// writeDLQTable prints letters as a table: failed_at, group, type, order id,
// reason, error (truncated), copies (how many records hold the letter: a
// message dead-lettered again after a redelivery is one letter), position
// (the first copy's).
func writeDLQTable(w io.Writer, letters []deadletter.Letter) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAILED_AT\tGROUP\tTYPE\tORDER\tREASON\tERROR\tCOPIES\tPOSITION")
	for _, l := range letters {
		failed := "-"
		if !l.FailedAt.IsZero() {
			failed = l.FailedAt.UTC().Format(time.RFC3339)
		}
		reason := dlqOr(l.Reason, "-")
		if len(l.Problems) > 0 {
			reason += " (malformed)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", failed, dlqOr(l.Group, "-"), dlqOr(l.EventType, "-"), dlqOr(l.OrderID, "-"),
			reason, dlqOr(dlqTruncate(dlqOneLine(l.Error), 60), "-"), max(l.Copies, 1), l.Position)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d dead letters\n", len(letters))
	return err
}

func dlqOneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// dlqTruncate cuts s to n runes, marking the cut with an ellipsis.
func dlqTruncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// writeDLQLetter prints everything about l: its fields, every header, and its
// value (JSON indented).
func writeDLQLetter(w io.Writer, l deadletter.Letter) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	timeOf := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	row("position", l.Position.String())
	row("group", dlqOr(l.Group, "-"))
	row("reason", dlqOr(l.Reason, "-"))
	row("error", dlqOr(l.Error, "-"))
	row("failed_at", timeOf(l.FailedAt))
	if l.Original != nil {
		row("original", l.Original.String())
	} else {
		row("original", "- (not replayable)")
	}
	row("event_id", dlqOr(l.EventID, "-"))
	row("event_type", dlqOr(l.EventType, "-"))
	row("order_id", dlqOr(l.OrderID, "-"))
	row("event_source", dlqOr(l.EventSource, "-"))
	row("event_time", timeOf(l.EventTime))
	row("trace_id", dlqOr(l.TraceID, "-"))
	row("replays", fmt.Sprint(l.ReplayCount))
	if l.ReplayedFrom != "" {
		row("replayed_from", l.ReplayedFrom)
	}
	for _, p := range l.Problems {
		row("problem", p)
	}
	row("key", fmt.Sprintf("%q", l.Key))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "headers:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, h := range l.Headers {
		fmt.Fprintf(tw, "  %s\t%s\n", h.Key, h.Value)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "value:")
	var pretty bytes.Buffer
	if json.Valid(l.Value) && json.Indent(&pretty, l.Value, "  ", "  ") == nil {
		_, err := fmt.Fprintf(w, "  %s\n", pretty.Bytes())
		return err
	}
	_, err := fmt.Fprintf(w, "  %q\n", l.Value)
	return err
}

// dlqLetterJSON is a letter for --json: key and headers as text, the value as
// JSON when it is JSON.
type dlqLetterJSON struct {
	deadletter.Letter
	Key     string            `json:"key"`
	Value   json.RawMessage   `json:"value"`
	Headers map[string]string `json:"headers"`
}

func writeDLQJSON(w io.Writer, letters []deadletter.Letter) error {
	enc := json.NewEncoder(w)
	for _, l := range letters {
		out := dlqLetterJSON{Letter: l, Key: string(l.Key), Headers: map[string]string{}}
		out.Value = l.Value
		if !json.Valid(l.Value) {
			v, err := json.Marshal(string(l.Value))
			if err != nil {
				return err
			}
			out.Value = v
		}
		for _, h := range l.Headers {
			if _, seen := out.Headers[h.Key]; !seen {
				out.Headers[h.Key] = string(h.Value)
			}
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	return nil
}
