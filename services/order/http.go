package main

import (
	"context"
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

// routes adds the order API to r.
//
//	POST /orders       place an order (optional Idempotency-Key header)
//	GET  /orders/{id}  read an order and its status
func (s *service) routes(r chi.Router) {
	r.Post("/orders", s.handleCreate)
	r.Get("/orders/{id}", s.handleGet)
}

// createdResponse is the response to POST /orders: the order as placed. A
// replay with the same Idempotency-Key gets the same body again (the status
// is the one the order was placed with); GET shows the current state.
type createdResponse struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Email      string    `json:"email"`
	Status     Status    `json:"status"`
	TotalCents int64     `json:"total_cents"`
	Currency   string    `json:"currency"`
	Items      []Item    `json:"items"`
	Reason     string    `json:"reason"`
	CreatedAt  time.Time `json:"created_at"`
}

type orderResponse struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	Email      string    `json:"email"`
	Status     Status    `json:"status"`
	TotalCents int64     `json:"total_cents"`
	Currency   string    `json:"currency"`
	Items      []Item    `json:"items"`
	Reason     string    `json:"reason"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func (s *service) handleCreate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	key, err := idempotencyKey(r)
	if err != nil {
		s.writeError(ctx, w, err)
		return
	}
	var req NewOrder
	if err := web.Decode(w, r, &req); err != nil {
		s.writeError(ctx, w, err)
		return
	}
	if err := web.Invalid(req.Validate(web.CheckID)); err != nil {
		s.writeError(ctx, w, err)
		return
	}
	o, replayed, err := s.placeOrder(ctx, key, req)
	if err != nil {
		s.writeError(ctx, w, err)
		return
	}
	ctx = s.concernsOrder(ctx, o.ID)
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		s.logger.InfoContext(ctx, "order replayed for idempotency key")
	} else {
		s.logger.InfoContext(ctx, "order created", "total_cents", o.TotalCents, "items", len(o.Items))
	}
	w.Header().Set("Location", "/orders/"+o.ID.String())
	web.Encode(w, http.StatusCreated, createdResponse{
		OrderID: o.ID.String(), CustomerID: o.CustomerID, Email: o.Email,
		Status: StatusPending, TotalCents: o.TotalCents, Currency: o.Currency,
		Items: o.Items, Reason: "", CreatedAt: o.CreatedAt.UTC(),
	})
}

func (s *service) handleGet(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	raw := chi.URLParam(r, "id")
	id, err := uuid.Parse(raw)
	if !web.CheckID(raw) || err != nil {
		s.writeError(ctx, w, ErrNotFound)
		return
	}
	ctx = s.concernsOrder(ctx, id)
	o, err := s.getOrder(ctx, id)
	if err != nil {
		s.writeError(ctx, w, err)
		return
	}
	web.Encode(w, http.StatusOK, orderResponse{
		OrderID: o.ID.String(), CustomerID: o.CustomerID, Email: o.Email,
		Status: o.Status, TotalCents: o.TotalCents, Currency: o.Currency,
		Items: o.Items, Reason: o.Reason, CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC(),
	})
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

// concernsOrder tags the request's span and log lines with the order id.
func (s *service) concernsOrder(ctx context.Context, id uuid.UUID) context.Context {
	trace.SpanFromContext(ctx).SetAttributes(telemetry.OrderID.String(id.String()))
	return telemetry.WithLogAttrs(ctx, slog.String(telemetry.LogOrderID, id.String()))
}

// writeError is the one place errors become responses. Clients never see
// internal error text; unexpected errors are logged here, once.
func (s *service) writeError(ctx context.Context, w http.ResponseWriter, err error) {
	var reqErr *web.RequestError
	var invalid *ValidationError
	var p web.Problem
	switch {
	case errors.As(err, &reqErr):
		p = reqErr.Problem()
	case errors.As(err, &invalid):
		p = web.Problem{Status: http.StatusUnprocessableEntity, Detail: "the order cannot be placed", Errors: invalid.Fields}
	case errors.Is(err, ErrConflict):
		p = web.Problem{Status: http.StatusUnprocessableEntity, Detail: "this Idempotency-Key was already used for a different request"}
	case errors.Is(err, ErrNotFound):
		p = web.Problem{Status: http.StatusNotFound, Detail: "no such order"}
	default:
		s.logger.ErrorContext(ctx, "request failed", "err", err)
		web.WriteProblem(w, web.Problem{Status: http.StatusInternalServerError})
		return
	}
	s.logger.InfoContext(ctx, "request refused", "status", p.Status, "err", err)
	web.WriteProblem(w, p)
}
