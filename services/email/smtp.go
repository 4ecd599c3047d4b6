package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"time"
)

// Sender delivers one email to one address. It fails with
// ErrRecipientRejected when the mail server refuses the address for good; any
// other error means the email may not have been delivered yet and a later
// attempt may succeed.
type Sender interface {
	Send(ctx context.Context, to, subject, body string) error
}

// smtpTimeout bounds one whole delivery (connect to QUIT), so a mail server
// that hangs cannot hold the consumer's transaction open for long.
const smtpTimeout = 10 * time.Second

// smtpSender delivers over plain SMTP without authentication, as a local
// development mail server (MailHog, Mailpit) expects.
type smtpSender struct {
	addr        string // host:port
	envelope    string // MAIL FROM address
	headerFrom  string // From header, may carry a display name
	timeout     time.Duration
	localDomain string
}

func newSMTPSender(addr string, from fromAddress) smtpSender {
	return smtpSender{addr: addr, envelope: from.Address, headerFrom: from.Header, timeout: smtpTimeout, localDomain: "localhost"}
}

// Send runs one SMTP session: EHLO, MAIL, RCPT, DATA, QUIT. Network errors
// (refused, reset, timeout) come back as net.Error; a reply code the server
// refuses with comes back as a *textproto.Error, wrapped in
// ErrRecipientRejected as well when it is a permanent refusal of the address
// (see recipientRejected).
func (s smtpSender) Send(ctx context.Context, to, subject, body string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("smtp connect %s: %w", s.addr, err)
	}
	defer conn.Close()
	// net/smtp knows no context: a deadline on the connection, moved to the
	// past when ctx ends early, makes every read and write give up.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	host, _, _ := net.SplitHostPort(s.addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("smtp greeting from %s: %w", s.addr, err)
	}
	defer c.Close()
	if err := c.Hello(s.localDomain); err != nil {
		return fmt.Errorf("smtp hello to %s: %w", s.addr, err)
	}
	if err := c.Mail(s.envelope); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		if recipientRejected(err) {
			return fmt.Errorf("smtp RCPT TO: %w: %w", ErrRecipientRejected, err)
		}
		return fmt.Errorf("smtp RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(s.message(to, subject, body)); err != nil {
		return fmt.Errorf("smtp write message: %w", err)
	}
	// The server accepts the message with its reply to the closing ".".
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp end of DATA: %w", err)
	}
	// The message is accepted now; a failed QUIT must not make the caller
	// send it again.
	_ = c.Quit()
	return nil
}

// message is the RFC 5322 text of the email. The body is quoted-printable,
// so any text is safe over a 7-bit server; the subject is Q-encoded when it
// is not plain ASCII. net/smtp's DATA writer adds CRLFs and dot-stuffing.
func (s smtpSender) message(to, subject, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", s.headerFrom)
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(body))
	_ = qp.Close()
	return b.Bytes()
}

// recipientRejected reports whether err, the reply to RCPT TO, refuses the
// address itself for good (RFC 5321): 550 mailbox unavailable (no such user),
// 551 user not local, 553 mailbox name not allowed. Every other refusal is
// about now or about us, not the address: 4xx is temporary by definition,
// 552 (mailbox full) is to be treated as temporary at RCPT (RFC 5321
// 4.5.3.1.10), and 554, or a 5xx to any other command (MAIL FROM, DATA),
// would refuse every email alike, so it calls for fixing the mail setup,
// not for giving up on this one.
func recipientRejected(err error) bool {
	var reply *textproto.Error
	if !errors.As(err, &reply) {
		return false
	}
	switch reply.Code {
	case 550, 551, 553:
		return true
	}
	return false
}
