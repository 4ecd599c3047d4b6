package main

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// routes adds the email API:
//
//	GET /emails?order_id={id}  200 the emails sent about the order (possibly []); 400 when order_id is missing or not a UUID
func (s *service) routes(r chi.Router) {
	r.Get("/emails", s.handleListEmails)
}

type emailResponse struct {
	OrderID string    `json:"order_id"`
	Kind    string    `json:"kind"`
	To      string    `json:"to"`
	Subject string    `json:"subject"`
	SentAt  time.Time `json:"sent_at"`
}

func (s *service) handleListEmails(w http.ResponseWriter, r *http.Request) {
	orderID, err := queryOrderID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := telemetry.WithLogAttrs(r.Context(), slog.String(telemetry.LogOrderID, orderID.String()))
	trace.SpanFromContext(ctx).SetAttributes(telemetry.OrderID.String(orderID.String()))
	r = r.WithContext(ctx)
	sent, err := sentEmails(ctx, s.pool, orderID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]emailResponse, len(sent))
	for i, e := range sent {
		out[i] = emailResponse{OrderID: e.OrderID, Kind: e.Kind, To: e.To, Subject: e.Subject, SentAt: e.SentAt.UTC()}
	}
	web.Encode(w, http.StatusOK, out)
}

// queryOrderID reads the one order_id query parameter; a missing, repeated
// or malformed one is a 400 RequestError.
func queryOrderID(r *http.Request) (uuid.UUID, error) {
	values := r.URL.Query()["order_id"]
	var problem string
	var id uuid.UUID
	switch {
	case len(values) == 0 || values[0] == "":
		problem = "is required"
	case len(values) > 1:
		problem = "give it once"
	default:
		var ok bool
		if id, ok = parseOrderID(values[0]); !ok || !web.CheckID(values[0]) {
			problem = "must be a UUID"
		}
	}
	if problem != "" {
		return uuid.UUID{}, &web.RequestError{Status: http.StatusBadRequest, Detail: "the query has an invalid order_id",
			Fields: map[string]string{"order_id": problem}}
	}
	return id, nil
}

// writeError is the one place errors become problem responses.
func (s *service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var reqErr *web.RequestError
	switch {
	case errors.As(err, &reqErr):
		web.WriteProblem(w, reqErr.Problem())
	case errors.Is(err, ErrNotFound):
		web.WriteProblem(w, web.Problem{Status: http.StatusNotFound})
	default:
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		web.WriteProblem(w, web.Problem{Status: http.StatusInternalServerError})
	}
}
