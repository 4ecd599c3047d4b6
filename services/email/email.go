package main

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// Kinds of email the service sends; at most one of each per order.
const (
	KindOrderShipped   = "order_shipped"
	KindOrderCancelled = "order_cancelled"
)

// Errors of the email domain.
var (
	ErrNotFound       = errors.New("not found")
	ErrInvalidAddress = errors.New("invalid email address")
	// ErrRecipientRejected is a mail server refusing an address for good
	// (no such mailbox): sending to it again cannot succeed.
	ErrRecipientRejected = errors.New("recipient address rejected")
)

// Recipient is whom the emails about an order go to.
type Recipient struct {
	OrderID    string
	CustomerID string
	Email      string
}

// Message is an email about an order, before it is addressed.
type Message struct {
	Kind    string
	Subject string
	Body    string
}

// SentEmail is an email that went out.
type SentEmail struct {
	OrderID string
	Kind    string
	To      string
	Subject string
	SentAt  time.Time
}

// maxAddressLen is the longest address SMTP can carry (RFC 5321 path limit).
const maxAddressLen = 254

// CheckAddress returns ErrInvalidAddress unless s is a bare address
// ("name@example.com", no display name, no comments, no line breaks), which
// is what goes into the SMTP envelope and the To header.
func CheckAddress(s string) error {
	if s == "" || len(s) > maxAddressLen || strings.ContainsAny(s, "\r\n") {
		return fmt.Errorf("%w: %q", ErrInvalidAddress, truncate(s, 64))
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("%w: %q", ErrInvalidAddress, truncate(s, 64))
	}
	return nil
}

// ShippedEmail tells the customer that the order left the warehouse.
func ShippedEmail(orderID, trackingNumber string) Message {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello,\n\nyour order %s has shipped.\n", orderID)
	if trackingNumber != "" {
		fmt.Fprintf(&b, "Its tracking number is %s.\n", trackingNumber)
	}
	b.WriteString("\nThank you for shopping with Sagashop.\n")
	return Message{Kind: KindOrderShipped, Subject: fmt.Sprintf("Your order %s has shipped", orderID), Body: b.String()}
}

// maxReasonLen caps the reason quoted in an email; reasons are short codes.
const maxReasonLen = 200

// CancelledEmail tells the customer that the order was cancelled and why:
// reason is the cancellation's short code, quoted as it is; explanation,
// when there is one, says in a sentence what it means for the customer.
func CancelledEmail(orderID, reason, explanation string) Message {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello,\n\nyour order %s was cancelled.\n", orderID)
	if explanation != "" {
		b.WriteString(explanation + "\n")
	}
	if reason == "" {
		reason = "unknown"
	}
	fmt.Fprintf(&b, "Reason: %s\n\nWe are sorry. Sagashop\n", truncate(reason, maxReasonLen))
	return Message{Kind: KindOrderCancelled, Subject: fmt.Sprintf("Your order %s was cancelled", orderID), Body: b.String()}
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
