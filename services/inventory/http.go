package main

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// problems is how the catalog API answers its domain errors; everything
// else is a 500 (web.Problems.Write).
var problems = web.Problems{
	ErrInvalid:  {Status: http.StatusUnprocessableEntity, Title: "invalid product", Detail: "the request has invalid fields"},
	ErrNotFound: {Status: http.StatusNotFound, Title: "product not found", Detail: "no such resource"},
	ErrPreconditionFailed: {Status: http.StatusPreconditionFailed, Title: "product changed",
		Detail: "the product is not at the version If-Match names: read it again (GET) and decide on its current stock"},
	ErrPreconditionRequired: {Status: http.StatusPreconditionRequired, Title: "If-Match required",
		Detail: "changing the available units of an existing product needs If-Match with its ETag; POST /products/{sku}/restock adds units without it"},
}

// routes adds the catalog API to r.
//
//	PUT  /products/{sku}          create or replace a product (If-Match to change the stock of one that exists)
//	GET  /products/{sku}          read a product; its ETag is its version
//	POST /products/{sku}/restock  add units to the available stock
func (s *service) routes(r chi.Router) {
	r.Put("/products/{sku}", s.handlePutProduct)
	r.Get("/products/{sku}", s.handleGetProduct)
	r.Post("/products/{sku}/restock", s.handleRestock)
}

// putProductRequest has pointer fields so a missing field is told apart
// from a zero value: name and price are required, available is for a new
// product (and for an existing one under If-Match).
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
	Version    int64  `json:"version"`
}

func toResponse(p versionedProduct) productResponse {
	return productResponse{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Available: p.Available, Reserved: p.Reserved, Version: p.Version}
}

// writeProduct answers p with its version as the ETag.
func writeProduct(w http.ResponseWriter, status int, p versionedProduct) {
	w.Header().Set("ETag", etag(p.Version))
	web.Encode(w, status, toResponse(p))
}

// etag is the entity tag of a product version.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// ifMatch returns what the request's If-Match header accepts, or nil when
// there is none: "*" any version, otherwise the versions of its strong
// entity tags ("7"). A weak tag (W/"7") or anything malformed matches
// nothing, since If-Match compares strongly (RFC 9110, 13.1.1).
func ifMatch(r *http.Request) func(version int64) bool {
	values := r.Header.Values("If-Match")
	if len(values) == 0 {
		return nil
	}
	anyVersion := false
	versions := map[int64]bool{}
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" {
				anyVersion = true
				continue
			}
			if len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' {
				continue
			}
			if n, err := strconv.ParseInt(tag[1:len(tag)-1], 10, 64); err == nil {
				versions[n] = true
			}
		}
	}
	return func(version int64) bool { return anyVersion || versions[version] }
}

// handlePutProduct: PUT /products/{sku} {"name", "price_cents", "available"}
// → 201 with the product when it is new, 200 when it was replaced, with its
// ETag. "available" is required for a new product; for one that exists it
// may be left out (the stock stays), and it may change only with If-Match
// naming the current ETag (428 without, 412 when the product changed
// since): units reserved since the client's read are never overwritten.
// Stock is added without a read by POST /products/{sku}/restock.
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
	if req.Available != nil {
		check("available", true, func() string { return CheckAvailable(*req.Available) })
	}
	if err := web.Invalid(fields); err != nil {
		problems.Write(w, r, err)
		return
	}
	p, created, err := s.saveProduct(r.Context(), productChange{
		SKU: sku, Name: *req.Name, PriceCents: *req.PriceCents, Available: req.Available, IfMatch: ifMatch(r),
	})
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.logger.InfoContext(r.Context(), "product saved", slog.String(telemetry.LogSKU, p.SKU), slog.Bool("created", created),
		slog.Int64("price_cents", p.PriceCents), slog.Int("available", p.Available), slog.Int64("version", p.Version))
	writeProduct(w, status, p)
}

type restockRequest struct {
	Quantity *int `json:"quantity"`
}

// handleRestock: POST /products/{sku}/restock {"quantity": n} → 200 with
// the product and its ETag: n units (1 to MaxAvailable) added to available
// in one statement, whatever was reserved meanwhile. With If-Match, only if
// the product is still at that version (412 otherwise), so that a client
// can retry a restock whose answer it did not get without adding twice.
func (s *service) handleRestock(w http.ResponseWriter, r *http.Request) {
	sku, err := web.PathID(r, "sku")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	var req restockRequest
	if err := web.Decode(w, r, &req); err != nil {
		problems.Write(w, r, err)
		return
	}
	if req.Quantity == nil {
		problems.Write(w, r, web.Invalid(map[string]string{"quantity": "is required"}))
		return
	}
	p, err := s.restock(r.Context(), sku, *req.Quantity, ifMatch(r))
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	s.logger.InfoContext(r.Context(), "product restocked", slog.String(telemetry.LogSKU, p.SKU), slog.Int("quantity", *req.Quantity),
		slog.Int("available", p.Available), slog.Int64("version", p.Version))
	writeProduct(w, http.StatusOK, p)
}

// handleGetProduct: GET /products/{sku} → 200 with the product and its
// ETag, 404 if there is none (or the SKU is not a valid id).
func (s *service) handleGetProduct(w http.ResponseWriter, r *http.Request) {
	sku, err := web.PathID(r, "sku")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	p, err := s.productVersion(r.Context(), sku)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	writeProduct(w, http.StatusOK, p)
}
