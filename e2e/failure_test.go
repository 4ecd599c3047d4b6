package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/broker"
	"github.com/sagashop/sagashop/pkg/events"
)

// findMessage scans topic for the event of type typ about orderID.
func (s *stack) findMessage(topic, typ, orderID string) kafka.Message {
	s.t.Helper()
	var found kafka.Message
	eventually(s.t, 30*time.Second, typ+" for "+orderID+" on "+topic, func() bool {
		for p := range events.Partitions {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.infra.Brokers(), Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					break
				}
				if string(m.Key) == orderID && events.Header(m, events.HeaderType) == typ {
					found = m
					break
				}
			}
			cancel()
			r.Close()
			if found.Value != nil {
				return true
			}
		}
		return false
	})
	return found
}

// metric returns the sum of the samples of a counter on a service's
// /metrics whose labels contain every one of labels.
func (s *stack) metric(service, name string, labels ...string) float64 {
	s.t.Helper()
	resp, err := s.client.Get("http://" + s.proc(service).addr + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func (s *stack) produce(msgs ...kafka.Message) {
	s.t.Helper()
	w := broker.NewWriter(s.infra.Brokers())
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		s.t.Fatal(err)
	}
}

func TestFailures(t *testing.T) {
	s := startStack(t)

	t.Run("events delivered twice have one effect", func(t *testing.T) {
		s := s.with(t)
		s.putProduct("cup-twice", 1000, 10)
		s.deposit("c-twice", 10_000)
		o := s.placeOrder("c-twice", item{SKU: "cup-twice", Quantity: 1})
		if final := s.waitTerminal(o.OrderID); final.Status != "SHIPPED" {
			t.Fatalf("order %+v", final)
		}
		s.waitEmail(o.OrderID, "order_shipped")

		// The same message again (same event id: the inbox skips it), and the
		// same fact under a new event id (the handlers' state checks skip it),
		// to every consumer of OrderCreated and InventoryReserved.
		consumers := []struct{ service, typ string }{
			{"payment", events.TypeOrderCreated},
			{"email", events.TypeOrderCreated},
			{"shipping", events.TypeInventoryReserved},
			{"order", events.TypeInventoryReserved},
		}
		type handled struct{ processed, duplicates float64 }
		count := func(service, typ string) handled {
			label := `type="` + typ + `"`
			return handled{s.metric(service, "consumer_messages_processed_total", label), s.metric(service, "consumer_duplicates_total", label)}
		}
		before := make([]handled, len(consumers))
		for i, c := range consumers {
			before[i] = count(c.service, c.typ)
		}
		var sh shipment
		if code := s.call(http.MethodGet, "shipping", "/shipments/"+o.OrderID, nil, &sh); code != http.StatusOK {
			t.Fatalf("GET /shipments/%s: %d", o.OrderID, code)
		}
		created := s.findMessage(events.TopicOrders, events.TypeOrderCreated, o.OrderID)
		reserved := s.findMessage(events.TopicInventory, events.TypeInventoryReserved, o.OrderID)
		created.Topic, reserved.Topic = events.TopicOrders, events.TopicInventory
		renamed := func(m kafka.Message) kafka.Message {
			c := m
			c.Headers = nil
			for _, h := range m.Headers {
				if h.Key == events.HeaderID {
					h.Value = []byte(uuid.NewString())
				}
				c.Headers = append(c.Headers, h)
			}
			return c
		}
		s.produce(created, reserved, renamed(created), renamed(reserved))

		// Settled: each consumer skipped the copy and applied the renamed
		// one (an original it had not handled yet when the baseline was
		// read only adds to processed). A consumer counts after it commits,
		// so what it did is visible once it counts.
		eventually(t, 30*time.Second, "every consumer to handle both copies", func() bool {
			for i, c := range consumers {
				now := count(c.service, c.typ)
				if now.duplicates < before[i].duplicates+1 || now.processed < before[i].processed+1 {
					return false
				}
			}
			return true
		})
		if b := s.balance("c-twice"); b != 10_000-1000 {
			t.Fatalf("balance %d: charged twice?", b)
		}
		var again shipment
		s.call(http.MethodGet, "shipping", "/shipments/"+o.OrderID, nil, &again)
		if again != sh {
			t.Fatalf("shipment changed: %+v then %+v", sh, again)
		}
		if p := s.product("cup-twice"); p.Available != 9 {
			t.Fatalf("stock %+v", p)
		}
		var final order
		if s.call(http.MethodGet, "order", "/orders/"+o.OrderID, nil, &final); final.Status != "SHIPPED" {
			t.Fatalf("order after duplicates: %+v", final)
		}
		s.waitEmail(o.OrderID, "order_shipped")
	})

	t.Run("poison messages are dead-lettered and the saga goes on", func(t *testing.T) {
		s := s.with(t)
		dead := s.metric("payment", "consumer_dead_lettered_total")
		s.produce(
			kafka.Message{Topic: events.TopicOrders, Key: []byte("poison"), Value: []byte("not json at all")},
			kafka.Message{Topic: events.TopicOrders, Key: []byte("poison"), Value: []byte(`{"order_id": 5}`), Headers: []kafka.Header{
				{Key: events.HeaderSpecVersion, Value: []byte("1.0")},
				{Key: events.HeaderID, Value: []byte(uuid.NewString())},
				{Key: events.HeaderType, Value: []byte(events.TypeOrderCreated)},
				{Key: events.HeaderSource, Value: []byte("test")},
				{Key: events.HeaderSubject, Value: []byte("poison")},
			}},
		)
		eventually(t, 30*time.Second, "two messages dead-lettered by payment", func() bool {
			return s.metric("payment", "consumer_dead_lettered_total") >= dead+2
		})
		s.putProduct("cup-after-poison", 100, 5)
		s.deposit("c-after-poison", 1000)
		o := s.placeOrder("c-after-poison", item{SKU: "cup-after-poison", Quantity: 1})
		if final := s.waitTerminal(o.OrderID); final.Status != "SHIPPED" {
			t.Fatalf("order after poison: %+v", final)
		}
	})

	t.Run("services killed mid-flow recover", func(t *testing.T) {
		s := s.with(t)
		s.putProduct("pen-chaos", 250, 1000)
		for i := range 4 {
			s.deposit(fmt.Sprintf("c-chaos-%d", i), 100_000)
		}
		place := func(n int) []order {
			return s.placeConcurrently(n,
				func(i int) string { return fmt.Sprintf("c-chaos-%d", i%4) },
				func(i int) item { return item{SKU: "pen-chaos", Quantity: 1 + i%3} })
		}
		// Round 1: every downstream service dies with orders in flight.
		placed := place(12)
		for _, name := range []string{"payment", "inventory", "shipping", "email"} {
			s.kill(name)
		}
		placed = append(placed, place(6)...) // the order service keeps taking orders
		for _, name := range []string{"payment", "inventory", "shipping", "email"} {
			s.restart(name)
		}
		// Round 2: the order service dies right after accepting orders, with
		// their events possibly still in its outbox.
		placed = append(placed, place(8)...)
		s.kill("order")
		s.restart("order")

		shippedQty, spent := 0, map[string]int64{}
		for _, o := range placed {
			final := s.waitTerminal(o.OrderID)
			if final.Status != "SHIPPED" {
				t.Errorf("order %s: %s (%s)", o.OrderID, final.Status, final.Reason)
				continue
			}
			for _, it := range final.Items {
				shippedQty += it.Quantity
			}
			spent[final.CustomerID] += final.TotalCents
			s.waitEmail(o.OrderID, "order_shipped")
		}
		eventually(t, sagaTimeout, "stock to settle", func() bool {
			p := s.product("pen-chaos")
			return p.Reserved == 0 && p.Available == 1000-shippedQty
		})
		for i := range 4 {
			c := fmt.Sprintf("c-chaos-%d", i)
			if b := s.balance(c); b != 100_000-spent[c] {
				t.Errorf("%s: balance %d, want %d", c, b, 100_000-spent[c])
			}
		}
	})
}
