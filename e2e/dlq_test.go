package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sagashop/sagashop/pkg/deadletter"
	"github.com/sagashop/sagashop/pkg/testenv"
)

// TestDLQ: an order whose PaymentProcessed inventory cannot apply (a
// trigger refuses that order's reservation, as a bug or a bad row would)
// is dead-lettered after the consumer's attempts and sits PAID with the
// money taken; once the cause is gone, `sagashopctl dlq replay` completes
// it, exactly once, and replaying the same letter again changes nothing.
func TestDLQ(t *testing.T) {
	s := startStack(t)
	ctl := s.buildCtl()

	const sku, price, qty = "mug-dlq", 1299, 2
	s.putProduct(sku, price, 10)
	s.deposit("c-dlq", 10_000)

	// Inventory is down while the order is placed and paid, so that the
	// trigger, which needs the order's id, is in place before inventory
	// sees its PaymentProcessed.
	s.stop("inventory")
	o := s.placeOrder("c-dlq", item{SKU: sku, Quantity: qty})
	eventually(t, sagaTimeout, "order "+o.OrderID+" PAID", func() bool { return s.order(o.OrderID).Status == "PAID" })
	s.admin(`CREATE FUNCTION inventory_svc.refuse_reservation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.order_id = '`+o.OrderID+`' THEN
        RAISE EXCEPTION 'reservations of order % are refused (test trigger)', NEW.order_id;
    END IF;
    RETURN NEW;
END $$`,
		`CREATE TRIGGER refuse_reservation BEFORE INSERT ON inventory_svc.reservations
    FOR EACH ROW EXECUTE FUNCTION inventory_svc.refuse_reservation()`)
	s.restart("inventory")

	// Dead-lettered after the consumer's attempts, counted, and listed by
	// the CLI; the order stays PAID with the money taken and no stock held.
	var letters []deadletter.Letter
	eventually(t, sagaTimeout, "the dead letter of "+o.OrderID, func() bool {
		letters = s.listLetters(ctl, "--order", o.OrderID)
		return len(letters) > 0
	})
	if len(letters) != 1 {
		t.Fatalf("%d letters for the order: %+v", len(letters), letters)
	}
	l := letters[0]
	if l.Group != "inventory" || l.EventType != "PaymentProcessed" || l.Reason != "max_attempts" || l.Original == nil ||
		l.Original.Topic != "payments.events" || !strings.Contains(l.Error, "refused (test trigger)") || l.TraceID == "" {
		t.Fatalf("letter %+v", l)
	}
	if n := s.metric("inventory", "consumer_dead_lettered_total", `group="inventory"`, `type="PaymentProcessed"`, `reason="max_attempts"`); n != 1 {
		t.Errorf("consumer_dead_lettered_total %v, want 1", n)
	}
	table := ctl("dlq", "list", "--group", "inventory", "--type", "PaymentProcessed")
	if !strings.Contains(table, o.OrderID) || !strings.Contains(table, l.Position.String()) {
		t.Errorf("list table:\n%s", table)
	}
	if got := s.order(o.OrderID); got.Status != "PAID" {
		t.Fatalf("order after the dead letter: %+v", got)
	}
	// The order service's dead-letter watch has seen it: the order says it
	// is stuck, and on what.
	var st stuckOrder
	eventually(t, sagaTimeout, "order "+o.OrderID+" stuck on its dead letter", func() bool {
		st = s.stuckOrder(o.OrderID)
		return st.Stuck
	})
	if !strings.Contains(st.StuckReason, "PaymentProcessed dead-lettered by inventory (max_attempts)") || len(st.DeadLetters) != 1 ||
		st.DeadLetters[0].Offset != l.Position.Offset {
		t.Fatalf("stuck order %+v", st)
	}
	paid := int64(10_000 - price*qty)
	if b := s.balance("c-dlq"); b != paid {
		t.Fatalf("balance %d, want %d", b, paid)
	}
	if p := s.product(sku); p.Available != 10 || p.Reserved != 0 {
		t.Fatalf("stock with the reservation refused: %+v", p)
	}

	// The cause removed, the replay completes the order.
	s.admin(`DROP TRIGGER refuse_reservation ON inventory_svc.reservations`, `DROP FUNCTION inventory_svc.refuse_reservation()`)
	if out := ctl("dlq", "replay", l.Position.String()); !strings.Contains(out, "replayed "+l.Position.String()+" -> payments.events") {
		t.Fatalf("replay:\n%s", out)
	}
	if final := s.waitTerminal(o.OrderID); final.Status != "SHIPPED" {
		t.Fatalf("order after the replay: %+v", final)
	}
	s.waitEmail(o.OrderID, "order_shipped")
	if st := s.stuckOrder(o.OrderID); st.Stuck || len(st.DeadLetters) != 1 {
		t.Fatalf("shipped order %+v", st)
	}
	eventually(t, sagaTimeout, "the reservation released at shipping", func() bool {
		p := s.product(sku)
		return p.Available == 10-qty && p.Reserved == 0
	})
	if b := s.balance("c-dlq"); b != paid {
		t.Fatalf("balance after the replay %d, want %d", b, paid)
	}
	var sh shipment
	if code := s.call(http.MethodGet, "shipping", "/shipments/"+o.OrderID, nil, &sh); code != http.StatusOK {
		t.Fatalf("GET /shipments/%s: %d", o.OrderID, code)
	}

	// The same letter again: inventory's and order's inboxes skip it.
	dups := func() float64 {
		return s.metric("inventory", "consumer_duplicates_total", `type="PaymentProcessed"`) +
			s.metric("order", "consumer_duplicates_total", `type="PaymentProcessed"`)
	}
	before := dups()
	if out := ctl("dlq", "replay", "--all", "--order", o.OrderID); !strings.Contains(out, "1 dead letters replayed") {
		t.Fatalf("second replay:\n%s", out)
	}
	eventually(t, sagaTimeout, "the second replay skipped by inventory and order", func() bool { return dups() >= before+2 })
	if b := s.balance("c-dlq"); b != paid {
		t.Errorf("balance after the second replay %d, want %d", b, paid)
	}
	if p := s.product(sku); p.Available != 10-qty || p.Reserved != 0 {
		t.Errorf("stock after the second replay: %+v", p)
	}
	var again shipment
	s.call(http.MethodGet, "shipping", "/shipments/"+o.OrderID, nil, &again)
	if again != sh {
		t.Errorf("shipment changed: %+v then %+v", sh, again)
	}
	if got := s.order(o.OrderID); got.Status != "SHIPPED" {
		t.Errorf("order after the second replay: %+v", got)
	}
	s.waitEmail(o.OrderID, "order_shipped") // still one of each kind
	if n := len(s.listLetters(ctl, "--order", o.OrderID)); n != 1 {
		t.Errorf("%d letters for the order after the replays, want 1", n)
	}
}

// buildCtl builds sagashopctl (a module of its own) and returns a function
// that runs it against the stack's broker and returns its output.
func (s *stack) buildCtl() func(args ...string) string {
	t := s.t
	t.Helper()
	bin := filepath.Join(s.bin, "sagashopctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.RepoRoot(t), "tools", "sagashopctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sagashopctl: %v\n%s", err, out)
	}
	return func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(s.infra.Brokers(), ","))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("sagashopctl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
}

// listLetters runs `sagashopctl dlq list --json` with args.
func (s *stack) listLetters(ctl func(args ...string) string, args ...string) []deadletter.Letter {
	s.t.Helper()
	out := ctl(append([]string{"dlq", "list", "--json"}, args...)...)
	var letters []deadletter.Letter
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		// key, value and headers are text in the CLI's JSON; the rest is
		// the Letter.
		var l struct {
			deadletter.Letter
			Key     string            `json:"key"`
			Value   json.RawMessage   `json:"value"`
			Headers map[string]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			s.t.Fatalf("dlq list --json line %q: %v", line, err)
		}
		letters = append(letters, l.Letter)
	}
	return letters
}

// admin runs statements as the superuser in the stack's database.
func (s *stack) admin(statements ...string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, s.adminURL())
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close(ctx)
	for _, sql := range statements {
		if _, err := db.Exec(ctx, sql); err != nil {
			s.t.Fatalf("%s: %v", sql, err)
		}
	}
}

func (s *stack) order(id string) order {
	s.t.Helper()
	var o order
	if code := s.call(http.MethodGet, "order", "/orders/"+id, nil, &o); code != http.StatusOK {
		s.t.Fatalf("GET /orders/%s: %d", id, code)
	}
	return o
}

// stuckOrder is what GET /orders/{id} says about an order being stuck.
type stuckOrder struct {
	Stuck       bool   `json:"stuck"`
	StuckReason string `json:"stuck_reason"`
	DeadLetters []struct {
		Topic  string `json:"dlq_topic"`
		Offset int64  `json:"dlq_offset"`
		Reason string `json:"reason"`
	} `json:"dead_letters"`
}

func (s *stack) stuckOrder(id string) stuckOrder {
	s.t.Helper()
	var o stuckOrder
	if code := s.call(http.MethodGet, "order", "/orders/"+id, nil, &o); code != http.StatusOK {
		s.t.Fatalf("GET /orders/%s: %d", id, code)
	}
	return o
}
