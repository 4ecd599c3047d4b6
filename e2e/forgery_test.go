package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sagashop/sagashop/pkg/consumer"
	"github.com/sagashop/sagashop/pkg/events"
)

func TestForgedEventsChangeNothing(t *testing.T) {
	startStack(t).forgedEventsChangeNothing()
}

// forgedEventsChangeNothing produces, as anyone who can reach the broker
// could, a PaymentProcessed for an order nobody paid for: once on another
// service's topic (shipping.events) and once on the right topic under
// another service's name. Were either applied, inventory would reserve and
// shipping would ship an order that was never charged. Both are
// dead-lettered with reason unexpected_source by every consumer that handles
// the type, and nothing changes.
func (s *stack) forgedEventsChangeNothing() {
	t := s.t
	s.putProduct("cup-forged", 700, 5)
	s.deposit("c-forged", 100) // too little: the order is cancelled
	o := s.placeOrder("c-forged", item{SKU: "cup-forged", Quantity: 1})
	if final := s.waitTerminal(o.OrderID); final.Status != "CANCELLED" || final.Reason != events.ReasonPaymentFailed {
		t.Fatalf("order %+v", final)
	}
	s.waitEmail(o.OrderID, "order_cancelled")

	forged := func(topic, source string) kafka.Message {
		e, err := events.New(source, events.PaymentProcessed{
			OrderID: o.OrderID, CustomerID: "c-forged", AmountCents: 700,
			Items: []events.Item{{SKU: "cup-forged", Quantity: 1, UnitPriceCents: 700}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return events.ToMessage(topic, e)
	}
	reason := `reason="` + consumer.ReasonUnexpectedSource + `"`
	before := map[string]float64{}
	for _, svc := range []string{"inventory", "order"} {
		before[svc] = s.metric(svc, "consumer_dead_lettered_total", reason)
	}
	s.produce(forged(events.TopicShipping, events.SourcePayment), forged(events.TopicPayments, events.SourceShipping))
	eventually(t, 30*time.Second, "inventory and order to dead-letter both forgeries", func() bool {
		return s.metric("inventory", "consumer_dead_lettered_total", reason) >= before["inventory"]+2 &&
			s.metric("order", "consumer_dead_lettered_total", reason) >= before["order"]+2
	})
	// A genuine order after the forgeries: once it has shipped, whatever
	// the forgeries could have done on the same partitions is done too.
	s.deposit("c-forged-2", 10_000)
	after := s.placeOrder("c-forged-2", item{SKU: "cup-forged", Quantity: 1})
	if final := s.waitTerminal(after.OrderID); final.Status != "SHIPPED" {
		t.Fatalf("genuine order after the forgeries: %+v", final)
	}

	if final := s.waitTerminal(o.OrderID); final.Status != "CANCELLED" || final.Reason != events.ReasonPaymentFailed {
		t.Errorf("forged order after the forgeries: %+v", final)
	}
	if code := s.call(http.MethodGet, "shipping", "/shipments/"+o.OrderID, nil, nil); code != http.StatusNotFound {
		t.Errorf("GET /shipments of the unpaid order: %d, want 404", code)
	}
	eventually(t, sagaTimeout, "the genuine order's reservation released", func() bool {
		p := s.product("cup-forged")
		return p.Available == 4 && p.Reserved == 0
	})
	if b := s.balance("c-forged"); b != 100 {
		t.Errorf("balance of the forged order's customer %d, want 100", b)
	}
}
