package main

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// problems is how the email API answers its domain errors. It has none of
// its own: a bad query is a 400 (*web.RequestError), an order without
// emails an empty list, and everything else a 500 (web.Problems.Write).
var problems = web.Problems{}

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

// handleListEmails: GET /emails?order_id={id} → 200 with the emails sent
// about the order, oldest first ([] for none); 400 for a bad order_id.
func (s *service) handleListEmails(w http.ResponseWriter, r *http.Request) {
	orderID, err := queryOrderID(r)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	r = r.WithContext(telemetry.ConcernsOrder(r.Context(), orderID.String()))
	sent, err := s.sentEmails(r.Context(), orderID)
	if err != nil {
		problems.Write(w, r, err)
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
		var err error
		if id, err = events.ParseOrderID(values[0]); err != nil {
			problem = "must be a UUID"
		}
	}
	if problem != "" {
		return uuid.UUID{}, &web.RequestError{Status: http.StatusBadRequest, Detail: "the query has an invalid order_id",
			Fields: map[string]string{"order_id": problem}}
	}
	return id, nil
}
