package main

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// routes adds the payment API to r.
func (s *service) routes(r chi.Router) {
	r.Post("/accounts/{customer_id}/deposits", s.handleDeposit)
	r.Get("/accounts/{customer_id}", s.handleGetAccount)
	r.Get("/payments/{order_id}", s.handleGetPayment)
}

type depositRequest struct {
	AmountCents *int64 `json:"amount_cents"`
}

type accountResponse struct {
	CustomerID   string `json:"customer_id"`
	BalanceCents int64  `json:"balance_cents"`
}

type paymentResponse struct {
	OrderID     string `json:"order_id"`
	Status      Status `json:"status"`
	AmountCents int64  `json:"amount_cents"`
}

// handleDeposit: POST /accounts/{customer_id}/deposits {"amount_cents": n}
// → 201 with the account. The first deposit opens the account.
func (s *service) handleDeposit(w http.ResponseWriter, r *http.Request) {
	customerID := chi.URLParam(r, "customer_id")
	if !web.CheckID(customerID) {
		web.WriteProblem(w, web.Problem{Status: http.StatusBadRequest, Detail: "invalid customer id"})
		return
	}
	var req depositRequest
	if err := web.Decode(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.AmountCents == nil {
		s.writeError(w, r, web.Invalid(map[string]string{"amount_cents": "is required"}))
		return
	}
	acc, err := s.deposit(r.Context(), customerID, *req.AmountCents)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.logger.InfoContext(r.Context(), "deposit made", "customer_id", customerID, "amount_cents", *req.AmountCents, "balance_cents", acc.BalanceCents)
	web.Encode(w, http.StatusCreated, accountResponse{CustomerID: acc.CustomerID, BalanceCents: acc.BalanceCents})
}

// handleGetAccount: GET /accounts/{customer_id} → 200 with the account, 404
// if there is none.
func (s *service) handleGetAccount(w http.ResponseWriter, r *http.Request) {
	customerID := chi.URLParam(r, "customer_id")
	if !web.CheckID(customerID) {
		s.writeError(w, r, ErrNotFound)
		return
	}
	acc, err := s.account(r.Context(), customerID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	web.Encode(w, http.StatusOK, accountResponse{CustomerID: acc.CustomerID, BalanceCents: acc.BalanceCents})
}

// handleGetPayment: GET /payments/{order_id} → 200 with the payment, 404 if
// there is none (or the id is no UUID).
func (s *service) handleGetPayment(w http.ResponseWriter, r *http.Request) {
	orderID := chi.URLParam(r, "order_id")
	id, err := uuid.Parse(orderID)
	if !web.CheckID(orderID) || err != nil {
		s.writeError(w, r, ErrNotFound)
		return
	}
	orderID = id.String()
	ctx := telemetry.WithLogAttrs(r.Context(), slog.String(telemetry.LogOrderID, orderID))
	trace.SpanFromContext(ctx).SetAttributes(telemetry.OrderID.String(orderID))
	r = r.WithContext(ctx)
	p, err := s.payment(ctx, orderID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	web.Encode(w, http.StatusOK, paymentResponse{OrderID: p.OrderID, Status: p.Status, AmountCents: p.AmountCents})
}

// writeError is the one place errors become responses: request problems
// keep their status, validation 422, not found 404, and anything else is
// logged and answered 500 without internal detail.
func (s *service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var reqErr *web.RequestError
	var invalid ValidationError
	switch {
	case errors.As(err, &reqErr):
		web.WriteProblem(w, reqErr.Problem())
	case errors.As(err, &invalid):
		web.WriteProblem(w, web.Problem{Status: http.StatusUnprocessableEntity, Detail: "the request has invalid fields", Errors: invalid})
	case errors.Is(err, ErrInvalid):
		web.WriteProblem(w, web.Problem{Status: http.StatusUnprocessableEntity, Detail: "the request is invalid"})
	case errors.Is(err, ErrNotFound):
		web.WriteProblem(w, web.Problem{Status: http.StatusNotFound, Detail: "no such resource"})
	default:
		s.logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		web.WriteProblem(w, web.Problem{Status: http.StatusInternalServerError})
	}
}
