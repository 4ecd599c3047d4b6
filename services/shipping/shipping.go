package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"
)

// The statuses of a shipment. Both are final: nothing happens to a
// shipment after it is created.
const (
	// StatusShipped: the order left the warehouse, with a tracking number.
	StatusShipped = "SHIPPED"
	// StatusCancelled is a tombstone: the order will never ship (it passed
	// its deadline first, or was cancelled). It has no tracking number, and
	// the shipping API does not show it.
	StatusCancelled = "CANCELLED"
)

// ErrNotFound: no shipment for the order (it has not shipped, or never will).
var ErrNotFound = errors.New("shipment not found")

// Shipment is one order on its way to the customer. The order's items are
// stored with it, but the shipping service does not interpret them.
type Shipment struct {
	OrderID        string
	TrackingNumber string
	Status         string
	CreatedAt      time.Time
}

// Tracking numbers are "SS" and 12 upper-case letters or digits: 36^12
// (about 4.7e18) values, so collisions are rare enough to retry.
const (
	trackingPrefix    = "SS"
	trackingAlphabet  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	trackingRandomLen = 12
)

// NewTrackingNumber returns a fresh tracking number drawn from crypto/rand.
func NewTrackingNumber() (string, error) { return newTrackingNumber(rand.Reader) }

func newTrackingNumber(r io.Reader) (string, error) {
	// Bytes at or above 252 (7*36) are rejected so every character is
	// equally likely; a plain modulo would favour the first four.
	const limit = 256 - 256%len(trackingAlphabet)
	out := make([]byte, 0, len(trackingPrefix)+trackingRandomLen)
	out = append(out, trackingPrefix...)
	buf := make([]byte, trackingRandomLen)
	for len(out) < cap(out) {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("new tracking number: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit || len(out) == cap(out) {
				continue
			}
			out = append(out, trackingAlphabet[int(b)%len(trackingAlphabet)])
		}
	}
	return string(out), nil
}

// ValidTrackingNumber reports whether s has the shape of a tracking number.
func ValidTrackingNumber(s string) bool {
	if len(s) != len(trackingPrefix)+trackingRandomLen || s[:len(trackingPrefix)] != trackingPrefix {
		return false
	}
	for i := len(trackingPrefix); i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
