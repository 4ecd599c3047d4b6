package web

import "net/http"

// MaxIdempotencyKeyLen is the longest Idempotency-Key a service accepts.
const MaxIdempotencyKeyLen = 255

// IdempotencyKey returns the request's Idempotency-Key header, "" when
// there is none, or a 400 *RequestError when it is given more than once or
// is not 1 to MaxIdempotencyKeyLen visible ASCII characters. A service
// stores the key with a hash of the request and the result, in the use
// case's transaction, so a repeat of the request gets the stored result.
func IdempotencyKey(r *http.Request) (string, error) {
	values := r.Header.Values("Idempotency-Key")
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) == 1 && validIdempotencyKey(values[0]):
		return values[0], nil
	}
	return "", &RequestError{Status: http.StatusBadRequest,
		Detail: "Idempotency-Key must be given once, as 1 to 255 visible ASCII characters"}
}

func validIdempotencyKey(k string) bool {
	if len(k) < 1 || len(k) > MaxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}
