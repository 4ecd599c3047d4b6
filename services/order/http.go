package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sagashop/sagashop/pkg/deadletter"
	"github.com/sagashop/sagashop/pkg/events"
	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// problems is how the order API answers its domain errors; everything else
// is a 500 (web.Problems.Write).
var problems = web.Problems{
	ErrInvalid:  {Status: http.StatusUnprocessableEntity, Title: "invalid order", Detail: "the order cannot be placed"},
	ErrConflict: {Status: http.StatusUnprocessableEntity, Title: "idempotency key reused", Detail: "this Idempotency-Key was already used for a different request"},
	ErrNotFound: {Status: http.StatusNotFound, Title: "order not found", Detail: "no such order"},
}

// routes adds the order API to r.
//
//	POST /orders       place an order (optional Idempotency-Key header)
//	GET  /orders/{id}  read an order, its status and deadline (stuck: past
//	                   it and still open, or open with an event of it
//	                   dead-lettered; dead_letters lists those)
func (s *service) routes(r chi.Router) {
	r.Post("/orders", s.handleCreate)
	r.Get("/orders/{id}", s.handleGet)
}

// createdResponse is the response to POST /orders: the order as placed. A
// replay with the same Idempotency-Key gets the same body again (the status
// is the one the order was placed with); GET shows the current state.
type createdResponse struct {
	OrderID    string        `json:"order_id"`
	CustomerID string        `json:"customer_id"`
	Email      string        `json:"email"`
	Status     Status        `json:"status"`
	TotalCents int64         `json:"total_cents"`
	Currency   string        `json:"currency"`
	Items      []events.Item `json:"items"`
	Reason     string        `json:"reason"`
	CreatedAt  time.Time     `json:"created_at"`
	Deadline   time.Time     `json:"deadline"` // created_at + SAGA_DEADLINE
}

// orderResponse is the response to GET /orders/{id}: the order as it is now.
// Stuck is true while the order is still not shipped or cancelled and is
// past its deadline or has an event some consumer dead-lettered, and
// StuckReason says what it waits for. DeadLetters are the order's events
// found in the dead-letter topics (the dead-letter watch records them), also
// once it has ended.
type orderResponse struct {
	createdResponse
	UpdatedAt   time.Time             `json:"updated_at"`
	ExpiredAt   *time.Time            `json:"expired_at,omitempty"`
	Stuck       bool                  `json:"stuck"`
	StuckReason string                `json:"stuck_reason,omitempty"`
	DeadLetters []deadletter.Recorded `json:"dead_letters"`
}

// newCreatedResponse returns o with its current status and reason.
func newCreatedResponse(o Order) createdResponse {
	return createdResponse{
		OrderID: o.ID.String(), CustomerID: o.CustomerID, Email: o.Email,
		Status: o.Status, TotalCents: o.TotalCents, Currency: o.Currency,
		Items: o.Items, Reason: o.Reason, CreatedAt: o.CreatedAt.UTC(), Deadline: o.Deadline.UTC(),
	}
}

func (s *service) handleCreate(w http.ResponseWriter, r *http.Request) {
	key, err := idempotencyKey(r)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	var req NewOrder
	if err := web.Decode(w, r, &req); err != nil {
		problems.Write(w, r, err)
		return
	}
	if err := req.Validate(web.CheckID); err != nil {
		problems.Write(w, r, err)
		return
	}
	o, replayed, err := s.placeOrder(r.Context(), key, req)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	ctx := telemetry.ConcernsOrder(r.Context(), o.ID.String())
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		s.logger.InfoContext(ctx, "order replayed for idempotency key")
	} else {
		s.logger.InfoContext(ctx, "order created", "total_cents", o.TotalCents, "items", len(o.Items))
	}
	w.Header().Set("Location", "/orders/"+o.ID.String())
	placed := newCreatedResponse(o)
	placed.Status, placed.Reason = StatusPending, "" // as placed, even when replayed later
	web.Encode(w, http.StatusCreated, placed)
}

func (s *service) handleGet(w http.ResponseWriter, r *http.Request) {
	id, err := web.PathUUID(r, "id")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	r = r.WithContext(telemetry.ConcernsOrder(r.Context(), id.String()))
	o, err := s.getOrder(r.Context(), id)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	resp := orderResponse{createdResponse: newCreatedResponse(o), UpdatedAt: o.UpdatedAt.UTC()}
	if o.ExpiredAt != nil {
		at := o.ExpiredAt.UTC()
		resp.ExpiredAt = &at
	}
	resp.DeadLetters, err = deadletter.ForOrder(r.Context(), s.pool, id)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	resp.StuckReason = Stuck(o.Status, o.Deadline, o.ExpiredAt != nil, time.Now())
	if n := len(resp.DeadLetters); resp.StuckReason == "" && n > 0 && !o.Status.Terminal() {
		l := resp.DeadLetters[n-1]
		resp.StuckReason = fmt.Sprintf("%s dead-lettered by %s (%s); replay: sagashopctl dlq replay %s", l.EventType, l.Group, l.Reason, l.Position())
	}
	resp.Stuck = resp.StuckReason != ""
	web.Encode(w, http.StatusOK, resp)
}

// idempotencyKey returns the request's Idempotency-Key, "" when there is
// none, or a 400 RequestError when it is not 1 to 255 visible ASCII
// characters or given twice.
func idempotencyKey(r *http.Request) (string, error) {
	values := r.Header.Values("Idempotency-Key")
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) == 1 && ValidIdempotencyKey(values[0]):
		return values[0], nil
	}
	return "", &web.RequestError{Status: http.StatusBadRequest,
		Detail: "Idempotency-Key must be given once, as 1 to 255 visible ASCII characters"}
}
