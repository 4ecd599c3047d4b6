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
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
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
	refusing := func(t *testing.T) string {
		srv := newSMTPServer(t)
		srv.failMail("451 4.3.0 try again later")
		return srv.addr
	}
	tests := []struct {
		name string
		addr func(t *testing.T) string
		// want reports whether err is of the expected kind.
		want func(err error) bool
	}{
		{"connection refused is a network error", refused, func(err error) bool {
			var ne net.Error
			return errors.As(err, &ne)
		}},
		{"silent server times out", silent, func(err error) bool {
			var ne net.Error
			return errors.As(err, &ne) && ne.Timeout()
		}},
		{"refusal carries the reply code", refusing, func(err error) bool {
			var pe *textproto.Error
			return errors.As(err, &pe) && pe.Code == 451
		}},
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
