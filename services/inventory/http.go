package main

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// problems is how the catalog API answers its domain errors; everything
// else is a 500 (web.Problems.Write).
var problems = web.Problems{
	ErrInvalid:  {Status: http.StatusUnprocessableEntity, Title: "invalid product", Detail: "the request has invalid fields"},
	ErrNotFound: {Status: http.StatusNotFound, Title: "product not found", Detail: "no such resource"},
}

// routes adds the catalog API to r.
func (s *service) routes(r chi.Router) {
	r.Put("/products/{sku}", s.handlePutProduct)
	r.Get("/products/{sku}", s.handleGetProduct)
}

// putProductRequest has pointer fields so a missing field is told apart
// from a zero value: every field is required.
type putProductRequest struct {
	Name       *string `json:"name"`
	PriceCents *int64  `json:"price_cents"`
	Available  *int    `json:"available"`
}

type productResponse struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Available  int    `json:"available"`
	Reserved   int    `json:"reserved"`
}

func toResponse(p Product) productResponse {
	return productResponse{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Available: p.Available, Reserved: p.Reserved}
}

// handlePutProduct: PUT /products/{sku} {"name", "price_cents", "available"}
// → 201 with the product when it is new, 200 when it was replaced.
func (s *service) handlePutProduct(w http.ResponseWriter, r *http.Request) {
	sku, err := web.PathID(r, "sku")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	var req putProductRequest
	if err := web.Decode(w, r, &req); err != nil {
		problems.Write(w, r, err)
		return
	}
	// Every field is checked, so one response names every problem.
	fields := map[string]string{}
	check := func(field string, present bool, problem func() string) {
		if !present {
			fields[field] = "is required"
		} else if msg := problem(); msg != "" {
			fields[field] = msg
		}
	}
	check("name", req.Name != nil, func() string { return CheckName(*req.Name) })
	check("price_cents", req.PriceCents != nil, func() string { return CheckPrice(*req.PriceCents) })
	check("available", req.Available != nil, func() string { return CheckAvailable(*req.Available) })
	if err := web.Invalid(fields); err != nil {
		problems.Write(w, r, err)
		return
	}
	p, created, err := s.putProduct(r.Context(), Product{SKU: sku, Name: *req.Name, PriceCents: *req.PriceCents, Available: *req.Available})
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.logger.InfoContext(r.Context(), "product saved", slog.String(telemetry.LogSKU, p.SKU), slog.Bool("created", created),
		slog.Int64("price_cents", p.PriceCents), slog.Int("available", p.Available))
	web.Encode(w, status, toResponse(p))
}

// handleGetProduct: GET /products/{sku} → 200 with the product, 404 if
// there is none (or the SKU is not a valid id).
func (s *service) handleGetProduct(w http.ResponseWriter, r *http.Request) {
	sku, err := web.PathID(r, "sku")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	p, err := s.product(r.Context(), sku)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	web.Encode(w, http.StatusOK, toResponse(p))
}
