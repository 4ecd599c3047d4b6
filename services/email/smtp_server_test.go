package main

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpServer is a minimal SMTP server on 127.0.0.1 for tests: it speaks
// enough of RFC 5321 for net/smtp (greeting, EHLO/HELO, MAIL, RCPT, DATA,
// RSET, NOOP, QUIT) and records every message it accepts.
type smtpServer struct {
	addr string

	mu       sync.Mutex
	messages []smtpMessage
	mailFail string // when set, the reply to MAIL FROM instead of 250
	rcptFail string // when set, the reply to RCPT TO instead of 250
}

// smtpMessage is one accepted message: envelope and parsed content.
type smtpMessage struct {
	From    string
	To      []string
	Header  mail.Header
	Subject string
	Body    string
}

func newSMTPServer(t *testing.T) *smtpServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: l.Addr().String()}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(t, c) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return s
}

// closedAddr returns the address of a port nothing listens on: a mail
// server that is not there, whose connections are refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// refusingAddr returns a function giving the address of a test server that
// answers MAIL FROM with mail and RCPT TO with rcpt ("" accepts), for
// tables of failure cases.
func refusingAddr(mail, rcpt string) func(t *testing.T) string {
	return func(t *testing.T) string {
		srv := newSMTPServer(t)
		srv.failMail(mail)
		srv.failRcpt(rcpt)
		return srv.addr
	}
}

// failMail makes the server refuse MAIL FROM with reply (e.g. "451 4.3.0
// try again later"); "" accepts again.
func (s *smtpServer) failMail(reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailFail = reply
}

// failRcpt makes the server refuse RCPT TO with reply (e.g. "550 5.1.1 no
// such user"); "" accepts again.
func (s *smtpServer) failRcpt(reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcptFail = reply
}

func (s *smtpServer) received() []smtpMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]smtpMessage(nil), s.messages...)
}

func (s *smtpServer) serve(t *testing.T, c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	reply := func(line string) { _ = tp.PrintfLine("%s", line) }
	reply("220 smtp.test.invalid ESMTP test server")
	var from string
	var to []string
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			reply("250 smtp.test.invalid")
		case "MAIL":
			s.mu.Lock()
			fail := s.mailFail
			s.mu.Unlock()
			if fail != "" {
				reply(fail)
				continue
			}
			from, to = angleAddr(arg), nil
			reply("250 2.1.0 OK")
		case "RCPT":
			s.mu.Lock()
			fail := s.rcptFail
			s.mu.Unlock()
			if fail != "" {
				reply(fail)
				continue
			}
			to = append(to, angleAddr(arg))
			reply("250 2.1.5 OK")
		case "DATA":
			reply("354 end data with <CR><LF>.<CR><LF>")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m, err := parseMessage(from, to, data)
			if err != nil {
				t.Errorf("test SMTP server: unparsable message: %v\n%s", err, data)
				reply("554 5.6.0 unparsable message")
				continue
			}
			s.mu.Lock()
			s.messages = append(s.messages, m)
			s.mu.Unlock()
			reply("250 2.0.0 queued")
		case "RSET", "NOOP":
			reply("250 2.0.0 OK")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("502 5.5.2 command not implemented")
		}
	}
}

// angleAddr returns the address in "FROM:<a@b> SIZE=1" or "TO:<a@b>".
func angleAddr(arg string) string {
	_, rest, _ := strings.Cut(arg, "<")
	addr, _, _ := strings.Cut(rest, ">")
	return addr
}

func parseMessage(from string, to []string, data []byte) (smtpMessage, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return smtpMessage{}, err
	}
	var body io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(msg.Body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return smtpMessage{}, err
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return smtpMessage{}, err
	}
	return smtpMessage{From: from, To: to, Header: msg.Header, Subject: subject, Body: strings.ReplaceAll(string(b), "\r\n", "\n")}, nil
}
