package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/database"
)

// Problems is a service's table from its domain errors (sentinels, matched
// with errors.Is) to the problem a client is answered with. The service
// declares the facts; Write is the one mechanism. An error should match one
// entry only.
type Problems map[error]Problem

// FieldErrors is implemented by a validation error that knows which request
// fields are wrong: Write puts them in the problem's "errors" member. Domain
// errors implement it with the standard library alone.
type FieldErrors interface {
	FieldErrors() map[string]string
}

// RetryAfterSeconds is the Retry-After of a 503 answered because the
// database cannot be reached: about how long a PostgreSQL restart or a
// failover keeps a service without connections.
const RetryAfterSeconds = 2

// unavailable is the problem of a request that failed because the database
// cannot be reached right now (database.Unavailable): the same request will
// succeed once it is back.
var unavailable = Problem{Status: http.StatusServiceUnavailable, Title: "service temporarily unavailable",
	Detail: "the service cannot reach its database right now; retry the same request shortly"}

// Write answers err as problem+json: a *RequestError with its own status; an
// error matching an entry of p with that problem, plus its field errors if
// it has any; an error that says the database cannot be reached
// (database.Unavailable) with 503 and Retry-After; anything else with 500
// and no detail, since clients never see internal error text. The router
// logs the error once, with the status (4xx at info, 503 at warn, other 5xx
// at error), in the request's log context.
func (p Problems) Write(w http.ResponseWriter, r *http.Request, err error) {
	prob := Problem{Status: http.StatusInternalServerError}
	var reqErr *RequestError
	if errors.As(err, &reqErr) {
		prob = reqErr.Problem()
	} else {
		for sentinel, entry := range p {
			if errors.Is(err, sentinel) {
				prob = entry
				break
			}
		}
		var fe FieldErrors
		if prob.Status < 500 && errors.As(err, &fe) {
			prob.Errors = fe.FieldErrors()
		}
		if prob.Status == http.StatusInternalServerError && database.Unavailable(err) {
			prob = unavailable
			w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
		}
	}
	if rec, ok := w.(errorRecorder); ok {
		rec.recordError(r.Context(), err)
	}
	WriteProblem(w, prob)
}

// errorRecorder is the router's response writer, which logs the error of a
// request after its handler returns.
type errorRecorder interface {
	recordError(ctx context.Context, err error)
}

// ErrBadPathID is the error of a path segment that is no acceptable
// identifier: a 404 on reads (it names no resource) and a 400 on writes.
var ErrBadPathID = errors.New("invalid identifier in the path")

// PathID returns the path parameter name if CheckID accepts it, else a
// *RequestError wrapping ErrBadPathID: 404 for GET and HEAD (such an id
// names no resource), 400 for other methods.
func PathID(r *http.Request, name string) (string, error) {
	v := chi.URLParam(r, name)
	if !CheckID(v) {
		return "", badPathID(r, name)
	}
	return v, nil
}

// PathUUID is PathID for a parameter that must be a UUID in canonical
// 36-character form (an order id).
func PathUUID(r *http.Request, name string) (uuid.UUID, error) {
	v := chi.URLParam(r, name)
	id, err := uuid.Parse(v)
	if len(v) != 36 || err != nil {
		return uuid.UUID{}, badPathID(r, name)
	}
	return id, nil
}

func badPathID(r *http.Request, name string) error {
	status := http.StatusBadRequest
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		status = http.StatusNotFound
	}
	return &RequestError{Status: status, Detail: "invalid " + name, err: ErrBadPathID}
}
