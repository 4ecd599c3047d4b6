package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// The fuzz targets of what a client sends: the JSON body, the
// Idempotency-Key header and the ids in the path. Their seed corpus is in
// testdata/fuzz/<target>; `go test` runs it as ordinary tests,
// `go test -run '^$' -fuzz '^FuzzDecode$' ./pkg/web/` explores.

// fuzzBody has the shapes the services decode: pointers to tell a missing
// field from a zero, a list of objects, a map.
type fuzzBody struct {
	Name  *string         `json:"name"`
	Count *int64          `json:"count"`
	Items []fuzzBodyItem  `json:"items"`
	Tags  map[string]bool `json:"tags"`
}

type fuzzBodyItem struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// FuzzDecode sends body with contentType (none when empty), with its length
// known or chunked, to Decode. It refuses with a *RequestError of 400, 413
// (only a body over MaxBodyBytes) or 415 (only a content type other than
// application/json); what it accepts is within the limit, one JSON object
// (or null) with only known fields, whose value encodes and decodes again
// to itself.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, contentType string, body []byte, chunked bool) {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if chunked {
			r.ContentLength = -1
		}
		w := httptest.NewRecorder()
		var v fuzzBody
		err := Decode(w, r, &v)
		jsonType := contentType == "" || isJSONMediaType(contentType)
		if err != nil {
			var reqErr *RequestError
			if !errors.As(err, &reqErr) {
				t.Fatalf("Decode: %v (%T), want a *RequestError", err, err)
			}
			switch reqErr.Status {
			case http.StatusBadRequest:
			case http.StatusRequestEntityTooLarge:
				if len(body) <= MaxBodyBytes {
					t.Fatalf("413 for a body of %d bytes, within the limit of %d", len(body), MaxBodyBytes)
				}
				if !chunked && w.Header().Get("Connection") != "close" {
					t.Error("413 for a body of known length without Connection: close")
				}
			case http.StatusUnsupportedMediaType:
				if jsonType {
					t.Fatalf("415 for content type %q", contentType)
				}
			default:
				t.Fatalf("status %d: %v", reqErr.Status, err)
			}
			return
		}
		if !jsonType {
			t.Fatalf("accepted content type %q", contentType)
		}
		if len(body) > MaxBodyBytes {
			t.Fatalf("accepted a body of %d bytes, over the limit of %d", len(body), MaxBodyBytes)
		}
		if !json.Valid(body) {
			t.Fatalf("accepted %.200q, which is not one JSON value", body)
		}
		var raw any
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		if raw != nil {
			obj, ok := raw.(map[string]any)
			if !ok {
				t.Fatalf("accepted %.200q, which is no object", body)
			}
			checkKnownFields(t, obj, "name", "count", "items", "tags")
			if items, ok := obj["items"].([]any); ok {
				for _, it := range items {
					if it, ok := it.(map[string]any); ok {
						checkKnownFields(t, it, "sku", "quantity")
					}
				}
			}
		}

		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		// Decoded by encoding/json itself: the encoding, with every field
		// and HTML escapes, may be longer than the body was.
		var v2 fuzzBody
		if err := json.Unmarshal(again, &v2); err != nil {
			t.Fatalf("the encoding %.200s of a body it accepted does not decode: %v", again, err)
		}
		if again2, _ := json.Marshal(v2); !bytes.Equal(again, again2) {
			t.Fatalf("round trip changed the value:\n got %.200s\nwant %.200s", again2, again)
		}
	})
}

func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// checkKnownFields fails unless every key of obj is one of known, as
// encoding/json matches them: case-insensitively (Unicode simple folding).
func checkKnownFields(t *testing.T, obj map[string]any, known ...string) {
	t.Helper()
	for k := range obj {
		found := false
		for _, name := range known {
			found = found || strings.EqualFold(k, name)
		}
		if !found {
			t.Fatalf("accepted the unknown field %q", k)
		}
	}
}

// FuzzIdempotencyKey gives the header no value, a or a and b. A key is
// accepted exactly when it is given once as 1 to MaxIdempotencyKeyLen bytes
// from '!' to '~', and is returned as given; anything else is a 400.
func FuzzIdempotencyKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, n uint8, a, b string) {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		values := []string{a, b}[:n%3]
		for _, v := range values {
			r.Header.Add("Idempotency-Key", v)
		}
		key, err := IdempotencyKey(r)
		want := len(values) == 1 && len(a) >= 1 && len(a) <= MaxIdempotencyKeyLen && strings.Trim(a, visibleASCII) == ""
		switch {
		case len(values) == 0:
			if key != "" || err != nil {
				t.Fatalf("no header: %q, %v; want \"\", nil", key, err)
			}
		case want:
			if key != a || err != nil {
				t.Fatalf("key %q: got %q, %v", a, key, err)
			}
		default:
			var reqErr *RequestError
			if !errors.As(err, &reqErr) || reqErr.Status != http.StatusBadRequest || key != "" {
				t.Fatalf("values %q: got %q, %v; want a 400", values, key, err)
			}
		}
	})
}

// visibleASCII is every byte from '!' to '~'.
var visibleASCII = func() string {
	var b strings.Builder
	for c := byte('!'); c <= '~'; c++ {
		b.WriteByte(c)
	}
	return b.String()
}()

// FuzzPathID reads s as the path parameter of a GET or a PUT. PathID
// accepts exactly what CheckID documents (1 to 64 letters, digits, '.',
// '_', ':' or '-', starting with a letter or digit) and returns it as
// given; PathUUID exactly a UUID in canonical 36-character form. Both
// refuse with ErrBadPathID, 404 on GET and 400 on a write.
func FuzzPathID(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string, get bool) {
		method, status := http.MethodPut, http.StatusBadRequest
		if get {
			method, status = http.MethodGet, http.StatusNotFound
		}
		rctx := chi.NewRouteContext()
		rctx.URLParams.Add("id", s)
		r := httptest.NewRequest(method, "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		refused := func(err error) {
			t.Helper()
			var reqErr *RequestError
			if !errors.Is(err, ErrBadPathID) || !errors.As(err, &reqErr) || reqErr.Status != status {
				t.Fatalf("%s with id %q: %v, want ErrBadPathID with %d", method, s, err, status)
			}
		}

		id, err := PathID(r, "id")
		if want := documentedID(s); want != (err == nil) {
			t.Fatalf("PathID(%q) = %q, %v; documented as acceptable: %v", s, id, err, want)
		}
		if err != nil {
			refused(err)
		} else if id != s {
			t.Fatalf("PathID(%q) = %q", s, id)
		}

		u, err := PathUUID(r, "id")
		if err != nil {
			refused(err)
		} else if u.String() != strings.ToLower(s) {
			t.Fatalf("PathUUID(%q) = %s: not the input in canonical form", s, u)
		}
	})
}

// documentedID is CheckID's documentation, written out without its regexp.
func documentedID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._:-", rune(c))) {
			return false
		}
	}
	return true
}
