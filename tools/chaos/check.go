package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/events"
)

// invariant is one checked property and what broke it.
type invariant struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	OK         bool     `json:"ok"`
	Violations []string `json:"violations,omitempty"` // at most maxViolations
	Count      int      `json:"violation_count"`
}

const maxViolations = 20

// results are the checks' outcome.
type results struct {
	Invariants []invariant `json:"invariants"`
	// TerminalAfterHeal: seconds from heal until every acknowledged order
	// had ended (-1: not within the drain).
	TerminalAfterHeal float64 `json:"terminal_after_heal_s"`
	// Sabotaged: with -sabotage, the invariants broken on purpose, which
	// must fail (and only they).
	Sabotaged map[string]bool `json:"sabotaged,omitempty"`
	// DeadLetterCopies: dead letters written again for a message already
	// dead-lettered (redelivered before its offset was committed), which
	// every reader of dead letters takes for one; a figure, not a failure.
	DeadLetterCopies int    `json:"dead_letter_copies"`
	Error            string `json:"error,omitempty"` // the sabotage could not be done
}

// poisonGroups are the consumer groups that read orders.events, where the
// poison messages go: each must dead-letter every one of them once.
var poisonGroups = []string{"payment", "inventory", "shipping", "email"}

// checkAll waits for every acknowledged order to end (until heal + drain),
// then checks each invariant, retrying one that fails until 30 s more have
// passed, for effects that trail an order's end (its email, its stock
// released, the last outbox rows relayed).
func checkAll(ctx context.Context, st *stack, cfg config, fx *fixtures, h *history, poisons []string, healed time.Time) results {
	var res results
	acked := map[string]*op{}
	for _, o := range h.ops {
		if o.Ack {
			acked[o.ID] = o
		}
	}
	deadline := healed.Add(cfg.Drain)
	res.TerminalAfterHeal = -1
	var open []string
	for {
		open = openOrders(ctx, st, acked)
		if len(open) == 0 {
			res.TerminalAfterHeal = time.Since(healed).Seconds()
			break
		}
		if time.Now().After(deadline) || !sleep(ctx, 200*time.Millisecond) {
			break
		}
	}
	st.log.printf("orders terminal after heal: %.1fs (%d still open)", res.TerminalAfterHeal, len(open))
	res.Invariants = append(res.Invariants, verdict("terminal", "every acknowledged order terminal within heal + drain", open))

	if cfg.Sabotage {
		broken, err := sabotage(ctx, st, h)
		if err != nil {
			res.Error = err.Error()
		}
		res.Sabotaged = broken
		st.log.printf("sabotaged %d invariants on purpose: each must fail", len(broken))
	}
	settle := time.Now().Add(30 * time.Second)
	checks := []struct {
		id, name string
		fn       func() []string
	}{
		{"answered", "every request answered (after heal at the latest)", func() []string { return unanswered(h) }},
		{"known", "every order in the database is in the history", func() []string { return unknownOrders(ctx, st, acked) }},
		{"outcome", "each order's outcome fits its scenario", func() []string { return outcomes(acked) }},
		{"charged", "no order charged twice, none charged that did not ship", func() []string { return charges(ctx, st, acked) }},
		{"money", "money conserved per customer (deposits - shipped = balance)", func() []string { return money(ctx, st, fx, acked) }},
		{"stock", "stock conserved per SKU (initial - shipped = available, none reserved)", func() []string { return stock(ctx, st, fx, acked) }},
		{"shipments", "one shipment per shipped order, none for a cancelled one", func() []string { return shipments(ctx, st, acked) }},
		{"emails", "one email per (order, kind), of the order's outcome, sent", func() []string { return emails(ctx, st, acked) }},
		{"outboxes", "every outbox drained, no outbox dead letter", func() []string { return outboxes(ctx, st) }},
		{"deadletters", "dead-letter topics hold exactly the poison messages, each once (copies aside)", func() []string {
			v, copies := deadLetters(ctx, st, poisons)
			res.DeadLetterCopies = copies
			return v
		}},
	}
	for _, c := range checks {
		var v []string
		for {
			v = c.fn()
			if len(v) == 0 || time.Now().After(settle) || !sleep(ctx, 500*time.Millisecond) {
				break
			}
		}
		res.Invariants = append(res.Invariants, verdict(c.id, c.name, v))
	}
	return res
}

func verdict(id, name string, v []string) invariant {
	sort.Strings(v)
	inv := invariant{ID: id, Name: name, OK: len(v) == 0, Count: len(v)}
	inv.Violations = v[:min(len(v), maxViolations)]
	return inv
}

// openOrders reads every acknowledged order's status into the history and
// returns those not ended.
func openOrders(ctx context.Context, st *stack, acked map[string]*op) []string {
	rows, err := st.admin.Query(ctx, "SELECT id::text, status, reason FROM order_svc.orders")
	if err != nil {
		return []string{"read orders: " + err.Error()}
	}
	defer rows.Close()
	for rows.Next() {
		var id, status, reason string
		if err := rows.Scan(&id, &status, &reason); err != nil {
			return []string{"read orders: " + err.Error()}
		}
		if o, ok := acked[id]; ok {
			o.Final, o.Reason = status, reason
		}
	}
	if err := rows.Err(); err != nil {
		return []string{"read orders: " + err.Error()}
	}
	var open []string
	for id, o := range acked {
		if o.Final != "SHIPPED" && o.Final != "CANCELLED" {
			open = append(open, fmt.Sprintf("order %s (%s): %q", id, o.Scenario, o.Final))
		}
	}
	return open
}

func unanswered(h *history) []string {
	var v []string
	for _, o := range h.ops {
		switch {
		case o.Rejected:
			last := o.Attempts[len(o.Attempts)-1]
			v = append(v, fmt.Sprintf("order #%d (%s) refused: %d %s", o.Index, o.Scenario, last.Status, last.Error))
		case !o.Ack:
			v = append(v, fmt.Sprintf("order #%d (%s): no answer after %d attempts", o.Index, o.Scenario, len(o.Attempts)))
		}
	}
	return v
}

func unknownOrders(ctx context.Context, st *stack, acked map[string]*op) []string {
	var ids []string
	rows, err := st.admin.Query(ctx, "SELECT id::text FROM order_svc.orders")
	if err != nil {
		return []string{err.Error()}
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return []string{err.Error()}
		}
		n++
		if _, ok := acked[id]; !ok {
			ids = append(ids, "order "+id+" is in the database but was never acknowledged")
		}
	}
	if n < len(acked) {
		ids = append(ids, fmt.Sprintf("%d acknowledged orders, %d in the database", len(acked), n))
	}
	return ids
}

func outcomes(acked map[string]*op) []string {
	var v []string
	for id, o := range acked {
		got := o.Final + " " + o.Reason
		ok := o.Reason == "timed_out" && o.Final == "CANCELLED" // any saga may run out of time
		switch o.Scenario {
		case scenarioShip:
			ok = ok || o.Final == "SHIPPED"
		case scenarioUnpaid:
			ok = ok || got == "CANCELLED payment_failed"
		case scenarioOutStock:
			ok = ok || got == "CANCELLED out_of_stock"
		case scenarioScarce:
			ok = ok || o.Final == "SHIPPED" || got == "CANCELLED out_of_stock"
		}
		if !ok {
			v = append(v, fmt.Sprintf("order %s (%s): %s", id, o.Scenario, got))
		}
	}
	return v
}

func charges(ctx context.Context, st *stack, acked map[string]*op) []string {
	type payment struct {
		status string
		amount int64
	}
	pays := map[string]payment{}
	rows, err := st.admin.Query(ctx, "SELECT order_id::text, status, amount_cents FROM payment_svc.payments")
	if err != nil {
		return []string{err.Error()}
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var p payment
		if err := rows.Scan(&id, &p.status, &p.amount); err != nil {
			return []string{err.Error()}
		}
		pays[id] = p
	}
	var v []string
	for id, o := range acked {
		p := pays[id]
		switch {
		case o.Final == "SHIPPED" && (p.status != "CHARGED" || p.amount != o.Total):
			v = append(v, fmt.Sprintf("order %s shipped, payment %s %d, want CHARGED %d", id, p.status, p.amount, o.Total))
		case o.Final == "CANCELLED" && p.status == "CHARGED":
			v = append(v, fmt.Sprintf("order %s cancelled (%s) but its payment is still CHARGED", id, o.Reason))
		}
	}
	return v
}

func money(ctx context.Context, st *stack, fx *fixtures, acked map[string]*op) []string {
	spent := map[string]int64{}
	for _, o := range acked {
		if o.Final == "SHIPPED" {
			spent[o.Customer] += o.Total
		}
	}
	balances := map[string]int64{}
	deposits := map[string]int64{}
	if err := scanPairs(ctx, st, "SELECT customer_id, balance_cents FROM payment_svc.accounts", balances); err != nil {
		return []string{err.Error()}
	}
	if err := scanPairs(ctx, st, "SELECT customer_id, sum(amount_cents)::bigint FROM payment_svc.deposits GROUP BY customer_id", deposits); err != nil {
		return []string{err.Error()}
	}
	var v []string
	for _, c := range fx.paying {
		if deposits[c] != fx.deposit {
			v = append(v, fmt.Sprintf("customer %s: deposits %d, want %d", c, deposits[c], fx.deposit))
		}
		if want := deposits[c] - spent[c]; balances[c] != want {
			v = append(v, fmt.Sprintf("customer %s: balance %d, want deposits %d - shipped %d = %d", c, balances[c], deposits[c], spent[c], want))
		}
	}
	for _, c := range fx.unpaid {
		if b, ok := balances[c]; ok && b != 0 {
			v = append(v, fmt.Sprintf("customer %s (no deposit): balance %d", c, b))
		}
	}
	return v
}

func scanPairs(ctx context.Context, st *stack, sql string, into map[string]int64) error {
	rows, err := st.admin.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		into[k] = n
	}
	return rows.Err()
}

func stock(ctx context.Context, st *stack, fx *fixtures, acked map[string]*op) []string {
	shipped := map[string]int{}
	for _, o := range acked {
		if o.Final == "SHIPPED" {
			shipped[o.SKU] += o.Quantity
		}
	}
	rows, err := st.admin.Query(ctx, "SELECT sku, available, reserved FROM inventory_svc.products WHERE sku LIKE 'chaos-%'")
	if err != nil {
		return []string{err.Error()}
	}
	defer rows.Close()
	seen := 0
	var v []string
	for rows.Next() {
		var sku string
		var available, reserved int
		if err := rows.Scan(&sku, &available, &reserved); err != nil {
			return []string{err.Error()}
		}
		seen++
		if want := fx.stock[sku] - shipped[sku]; available != want || reserved != 0 {
			v = append(v, fmt.Sprintf("product %s: available %d reserved %d, want %d - shipped %d = %d and 0", sku, available, reserved, fx.stock[sku], shipped[sku], want))
		}
	}
	if err := rows.Err(); err != nil {
		return []string{err.Error()}
	}
	if seen != len(fx.stock) {
		v = append(v, fmt.Sprintf("%d of %d products in inventory", seen, len(fx.stock)))
	}
	return v
}

func shipments(ctx context.Context, st *stack, acked map[string]*op) []string {
	status := map[string]string{}
	rows, err := st.admin.Query(ctx, "SELECT order_id::text, status FROM shipping_svc.shipments")
	if err != nil {
		return []string{err.Error()}
	}
	defer rows.Close()
	for rows.Next() {
		var id, s string
		if err := rows.Scan(&id, &s); err != nil {
			return []string{err.Error()}
		}
		status[id] = s
	}
	var v []string
	for id, o := range acked {
		s := status[id]
		switch {
		case o.Final == "SHIPPED" && s != "SHIPPED":
			v = append(v, fmt.Sprintf("order %s shipped, shipment %q", id, s))
		case o.Final == "CANCELLED" && s == "SHIPPED":
			v = append(v, fmt.Sprintf("order %s cancelled (%s), but shipped", id, o.Reason))
		}
	}
	return v
}

func emails(ctx context.Context, st *stack, acked map[string]*op) []string {
	kinds := map[string][]string{}
	rows, err := st.admin.Query(ctx, "SELECT order_id::text, kind, sent_at IS NOT NULL FROM email_svc.emails")
	if err != nil {
		return []string{err.Error()}
	}
	defer rows.Close()
	for rows.Next() {
		var id, kind string
		var sent bool
		if err := rows.Scan(&id, &kind, &sent); err != nil {
			return []string{err.Error()}
		}
		if !sent {
			kind += " (unsent)"
		}
		kinds[id] = append(kinds[id], kind)
	}
	var v []string
	for id, o := range acked {
		want := "order_cancelled"
		if o.Final == "SHIPPED" {
			want = "order_shipped"
		}
		if got := kinds[id]; len(got) != 1 || got[0] != want {
			v = append(v, fmt.Sprintf("order %s %s: emails %v, want [%s]", id, o.Final, got, want))
		}
	}
	return v
}

func outboxes(ctx context.Context, st *stack) []string {
	var v []string
	for _, name := range services {
		for _, table := range []string{"outbox", "outbox_dead_letters"} {
			var n int
			if err := st.admin.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s_svc.%s", name, table)).Scan(&n); err != nil {
				v = append(v, fmt.Sprintf("%s %s: %v", name, table, err))
			} else if n != 0 {
				v = append(v, fmt.Sprintf("%s %s: %d rows", name, table, n))
			}
		}
	}
	return v
}

// deadLetters reads every group's dead-letter topic: each group reading
// orders.events holds each poison key from one origin (the dlq.original.*
// headers: where the message lay when it was dead-lettered), and nothing
// else is anywhere. Letters from the same origin are copies of one letter
// (the message redelivered after its dead letter was written and before its
// offset was committed, which pkg/deadletter's readers take for one): they
// are counted in copies, not violations. A key from two origins is shown
// with them, to tell a message dead-lettered twice from one written twice.
func deadLetters(ctx context.Context, st *stack, poisons []string) (v []string, copies int) {
	for _, group := range services {
		topic := events.DeadLetterTopic(group)
		letters, err := readTopic(ctx, st.brokers()[0], topic)
		if err != nil {
			v = append(v, fmt.Sprintf("%s: %v", topic, err))
			continue
		}
		var want []string
		if slices.Contains(poisonGroups, group) {
			want = slices.Clone(poisons)
		}
		keys := make([]string, 0, len(letters))
		from := map[string][]string{}
		seen := map[string]int{}
		for _, l := range letters {
			if l.origin != "" {
				if seen[l.origin]++; seen[l.origin] > 1 {
					copies++
					continue
				}
			}
			keys = append(keys, l.key)
			from[l.key] = append(from[l.key], l.source)
		}
		for o, n := range seen {
			if n > 1 {
				st.log.printf("%s: %d copies of the letter of %s (one letter)", topic, n, o)
			}
		}
		slices.Sort(keys)
		slices.Sort(want)
		if slices.Equal(keys, want) {
			continue
		}
		msg := fmt.Sprintf("%s holds %d letters %v, want the %d poison messages %v", topic, len(keys), trimKeys(keys), len(want), trimKeys(want))
		for _, k := range slices.Sorted(maps.Keys(from)) {
			if len(from[k]) > 1 {
				msg += fmt.Sprintf("; %s %d times, from %v", k, len(from[k]), from[k])
			}
		}
		v = append(v, msg)
	}
	return v, copies
}

func trimKeys(k []string) []string { return k[:min(len(k), 8)] }

// letter is a dead letter as the check sees it: its key, its origin (the
// dlq.original.* topic/partition/offset; "" when the letter lacks them),
// and where the message it holds came from and when it failed.
type letter struct{ key, origin, source string }

func header(m kafka.Message, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// readTopic returns every dead letter of a topic.
func readTopic(ctx context.Context, broker, topic string) ([]letter, error) {
	conn, err := kafka.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		return nil, fmt.Errorf("partitions: %w", err)
	}
	var keys []letter
	for _, p := range parts {
		pc, err := kafka.DialLeader(ctx, "tcp", broker, topic, p.ID)
		if err != nil {
			return nil, err
		}
		first, last, err := pc.ReadOffsets()
		pc.Close()
		if err != nil {
			return nil, err
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p.ID, MaxWait: 500 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			r.Close()
			return nil, err
		}
		for off := first; off < last; {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			m, err := r.ReadMessage(rctx)
			cancel()
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("partition %d at %d: %w", p.ID, off, err)
			}
			l := letter{key: string(m.Key)}
			if t, p, o := header(m, "dlq.original.topic"), header(m, "dlq.original.partition"), header(m, "dlq.original.offset"); t != "" && p != "" && o != "" {
				l.origin = t + "/" + p + "/" + o
			}
			l.source = fmt.Sprintf("%s/%s/%s at %s", header(m, "dlq.original.topic"), header(m, "dlq.original.partition"),
				header(m, "dlq.original.offset"), header(m, "dlq.failed.at"))
			keys = append(keys, l)
			off = m.Offset + 1
		}
		r.Close()
	}
	return keys, nil
}
