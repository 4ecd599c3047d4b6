package main

import (
	"context"
	"errors"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

func testSender(addr string) smtpSender {
	return newSMTPSender(addr, fromAddress{Address: "orders@sagashop.invalid", Header: `"Sagashop" <orders@sagashop.invalid>`})
}

func TestSMTPSenderDelivers(t *testing.T) {
	srv := newSMTPServer(t)
	body := "Hello,\n.a line starting with a dot\nÜnïcödé and a very long line " + strings.Repeat("x", 200) + "\n"
	if err := testSender(srv.addr).Send(context.Background(), "ada@example.com", "Your order 1 has shipped", body); err != nil {
		t.Fatal(err)
	}
	got := srv.received()
	if len(got) != 1 {
		t.Fatalf("server received %d messages, want 1", len(got))
	}
	m := got[0]
	if m.From != "orders@sagashop.invalid" || len(m.To) != 1 || m.To[0] != "ada@example.com" {
		t.Errorf("envelope from %q to %v", m.From, m.To)
	}
	if m.Subject != "Your order 1 has shipped" {
		t.Errorf("subject = %q", m.Subject)
	}
	if h := m.Header.Get("To"); h != "ada@example.com" {
		t.Errorf("To header = %q", h)
	}
	if h := m.Header.Get("From"); h != `"Sagashop" <orders@sagashop.invalid>` {
		t.Errorf("From header = %q", h)
	}
	if m.Body != body {
		t.Errorf("body = %q, want %q", m.Body, body)
	}
}

func TestSMTPSenderNonASCIISubject(t *testing.T) {
	srv := newSMTPServer(t)
	if err := testSender(srv.addr).Send(context.Background(), "ada@example.com", "Bestellung versandt – ✓", "hi\n"); err != nil {
		t.Fatal(err)
	}
	if got := srv.received(); len(got) != 1 || got[0].Subject != "Bestellung versandt – ✓" {
		t.Errorf("received %+v", got)
	}
}

func TestSMTPSenderFailures(t *testing.T) {
	silent := func(t *testing.T) string {
		// Accepts connections and never greets.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				conns = append(conns, c)
			}
		}()
		t.Cleanup(func() {
			l.Close()
			<-done
			for _, c := range conns {
				c.Close()
			}
		})
		return l.Addr().String()
	}
	// replied reports whether err carries reply code and, as rejected says,
	// ErrRecipientRejected.
	replied := func(code int, rejected bool) func(err error) bool {
		return func(err error) bool {
			var pe *textproto.Error
			return errors.As(err, &pe) && pe.Code == code && errors.Is(err, ErrRecipientRejected) == rejected
		}
	}
	tests := []struct {
		name string
		addr func(t *testing.T) string
		// want reports whether err is of the expected kind.
		want func(err error) bool
	}{
		{"connection refused is a network error", closedAddr, func(err error) bool {
			var ne net.Error
			return errors.As(err, &ne)
		}},
		{"silent server times out", silent, func(err error) bool {
			var ne net.Error
			return errors.As(err, &ne) && ne.Timeout()
		}},
		{"temporary refusal carries the reply code", refusingAddr("451 4.3.0 try again later", ""), replied(451, false)},
		{"no such user rejects the recipient", refusingAddr("", "550 5.1.1 no such user"), replied(550, true)},
		{"user not local rejects the recipient", refusingAddr("", "551 5.1.6 user not local"), replied(551, true)},
		{"mailbox name not allowed rejects the recipient", refusingAddr("", "553 5.1.3 bad address syntax"), replied(553, true)},
		{"mailbox busy is temporary", refusingAddr("", "450 4.2.1 mailbox busy"), replied(450, false)},
		{"too many recipients is temporary", refusingAddr("", "452 4.5.3 too many recipients"), replied(452, false)},
		{"mailbox full is temporary at RCPT", refusingAddr("", "552 5.2.2 mailbox full"), replied(552, false)},
		{"transaction failed at RCPT is not the address", refusingAddr("", "554 5.7.1 relay access denied"), replied(554, false)},
		{"sender refused is not the recipient", refusingAddr("550 5.7.1 sender rejected", ""), replied(550, false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSender(tt.addr(t))
			s.timeout = 300 * time.Millisecond
			err := s.Send(context.Background(), "ada@example.com", "s", "b")
			if err == nil || !tt.want(err) {
				t.Errorf("err = %v (%T)", err, errors.Unwrap(err))
			}
		})
	}
}

func TestSMTPSenderHonoursCancellation(t *testing.T) {
	srv := newSMTPServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := testSender(srv.addr).Send(ctx, "ada@example.com", "s", "b"); err == nil {
		t.Fatal("sent with a cancelled context")
	}
	if got := srv.received(); len(got) != 0 {
		t.Errorf("server received %d messages, want none", len(got))
	}
}
