// Package web is the HTTP plumbing every Sagashop service shares: strict JSON
// decoding with a size limit, RFC 9457 problem responses, input checks for
// path segments, the health and metrics endpoints, OpenTelemetry
// instrumentation and a server with timeouts and graceful shutdown. Domain
// errors are mapped to statuses by one writer (Problems.Write) from a table
// each service declares.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"time"
)

// MaxBodyBytes is the largest request body the services accept.
const MaxBodyBytes = 64 << 10

// Problem is an RFC 9457 problem details body. Errors maps request fields
// to what is wrong with them.
type Problem struct {
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail,omitempty"`
	Errors map[string]string `json:"errors,omitempty"`
}

// WriteProblem responds with an application/problem+json body.
func WriteProblem(w http.ResponseWriter, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Encode responds with v as JSON.
func Encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// RequestError is a problem with the request itself (not the domain): bad
// JSON, unknown fields, too large, invalid fields. Status says which.
type RequestError struct {
	Status int
	Detail string
	Fields map[string]string

	err error // what it is, for errors.Is
}

func (e *RequestError) Error() string { return fmt.Sprintf("%d: %s %v", e.Status, e.Detail, e.Fields) }

func (e *RequestError) Unwrap() error { return e.err }

// Problem returns the response body for e.
func (e *RequestError) Problem() Problem {
	return Problem{Status: e.Status, Detail: e.Detail, Errors: e.Fields}
}

// Invalid returns a 422 RequestError for fields, or nil when there are none.
func Invalid(fields map[string]string) error {
	if len(fields) == 0 {
		return nil
	}
	return &RequestError{Status: http.StatusUnprocessableEntity, Detail: "the request has invalid fields", Fields: fields}
}

// Decode reads exactly one JSON object from r's body into v, rejecting
// unknown fields, trailing data and bodies over MaxBodyBytes. It returns a
// *RequestError (400, 413 or 415).
//
// A body whose Content-Length is over the limit is refused before a byte of
// it is read: a client that sent Expect: 100-continue never gets the 100
// and never uploads, and the response says Connection: close, so the server
// neither reads the rest to reuse the connection nor resets it under a
// client still sending (it closes its side and lets the client read the
// 413). A body of unknown length (chunked) is cut at the limit as it is
// read.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength > MaxBodyBytes {
		w.Header().Set("Connection", "close")
		return tooLarge()
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &RequestError{Status: http.StatusUnsupportedMediaType, Detail: "send application/json"}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return tooLarge()
		case errors.Is(err, io.EOF):
			return &RequestError{Status: http.StatusBadRequest, Detail: "the body is empty"}
		case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
			return &RequestError{Status: http.StatusBadRequest, Detail: "the body is not valid JSON"}
		case errors.As(err, &typ):
			field := typ.Field
			if field == "" {
				field = "body"
			}
			return &RequestError{Status: http.StatusBadRequest, Detail: "a field has the wrong type",
				Fields: map[string]string{field: "must be a " + typ.Type.String()}}
		default:
			// json reports unknown fields only as text: "json: unknown field \"x\"".
			return &RequestError{Status: http.StatusBadRequest, Detail: trimJSONPrefix(err.Error())}
		}
	}
	if dec.More() {
		return &RequestError{Status: http.StatusBadRequest, Detail: "the body has data after the JSON object"}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooLarge()
		}
		return &RequestError{Status: http.StatusBadRequest, Detail: "the body has data after the JSON object"}
	}
	return nil
}

func tooLarge() *RequestError {
	return &RequestError{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes)}
}

func trimJSONPrefix(s string) string {
	const p = "json: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

// CheckID reports whether s is an acceptable identifier (customer id, SKU,
// order id): 1 to 64 letters, digits, '.', '_', ':' or '-', starting with a
// letter or digit. Anything else (SQL, paths, very long strings) is refused
// before it reaches a query.
func CheckID(s string) bool { return idPattern.MatchString(s) }

// Ready is one readiness check (database, Kafka).
type Ready func(ctx context.Context) error

// Serve runs srv until ctx ends, then shuts it down, giving in-flight
// requests up to 10 s to finish.
func Serve(ctx context.Context, srv *http.Server, logger *slog.Logger) error {
	errc := make(chan error, 1)
	go func() {
		logger.Info("http server listening", "addr", srv.Addr)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server %s: %w", srv.Addr, err)
		}
		close(errc)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return <-errc
}

// NewServer returns a server for handler on addr with timeouts set.
func NewServer(addr string, handler http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
