package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// problems is how the payment API answers its domain errors; everything
// else is a 500 (web.Problems.Write).
var problems = web.Problems{
	ErrInvalid:  {Status: http.StatusUnprocessableEntity, Title: "invalid request", Detail: "the request has invalid fields"},
	ErrNotFound: {Status: http.StatusNotFound, Title: "not found", Detail: "no such resource"},
	ErrKeyReused: {Status: http.StatusUnprocessableEntity, Title: "idempotency key reused",
		Detail: "this Idempotency-Key was already used for a different request"},
}

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
// → 201 with the account. The first deposit opens the account. With an
// Idempotency-Key (optional), a repeat of the same request credits nothing
// and gets the first answer again (the balance as that deposit left it),
// with Idempotent-Replayed: true; the key with another account or amount
// is refused with 422.
func (s *service) handleDeposit(w http.ResponseWriter, r *http.Request) {
	customerID, err := web.PathID(r, "customer_id")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	key, err := web.IdempotencyKey(r)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	var req depositRequest
	if err := web.Decode(w, r, &req); err != nil {
		problems.Write(w, r, err)
		return
	}
	if req.AmountCents == nil {
		problems.Write(w, r, web.Invalid(map[string]string{"amount_cents": "is required"}))
		return
	}
	acc, replayed, err := s.depositOnce(r.Context(), key, customerID, *req.AmountCents)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		s.logger.InfoContext(r.Context(), "deposit replayed for idempotency key", telemetry.LogCustomerID, customerID, "amount_cents", *req.AmountCents)
	} else {
		s.logger.InfoContext(r.Context(), "deposit made", telemetry.LogCustomerID, customerID, "amount_cents", *req.AmountCents, "balance_cents", acc.BalanceCents)
	}
	web.Encode(w, http.StatusCreated, accountResponse{CustomerID: acc.CustomerID, BalanceCents: acc.BalanceCents})
}

// handleGetAccount: GET /accounts/{customer_id} → 200 with the account, 404
// if there is none.
func (s *service) handleGetAccount(w http.ResponseWriter, r *http.Request) {
	customerID, err := web.PathID(r, "customer_id")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	acc, err := s.account(r.Context(), customerID)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	web.Encode(w, http.StatusOK, accountResponse{CustomerID: acc.CustomerID, BalanceCents: acc.BalanceCents})
}

// handleGetPayment: GET /payments/{order_id} → 200 with the payment, 404 if
// there is none (or the id is no UUID).
func (s *service) handleGetPayment(w http.ResponseWriter, r *http.Request) {
	id, err := web.PathUUID(r, "order_id")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	r = r.WithContext(telemetry.ConcernsOrder(r.Context(), id.String()))
	p, err := s.payment(r.Context(), id.String())
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	web.Encode(w, http.StatusOK, paymentResponse{OrderID: p.OrderID, Status: p.Status, AmountCents: p.AmountCents})
}
