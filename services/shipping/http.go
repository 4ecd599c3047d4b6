package main

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// routes adds the shipping API:
//
//	GET /shipments/{order_id}  200 the shipment; 404 until the order ships, and for ids that are not UUIDs
func (s *service) routes(r chi.Router) {
	r.Get("/shipments/{order_id}", s.handleGetShipment)
}

type shipmentResponse struct {
	OrderID        string `json:"order_id"`
	TrackingNumber string `json:"tracking_number"`
	Status         string `json:"status"`
}

func (s *service) handleGetShipment(w http.ResponseWriter, r *http.Request) {
	raw := chi.URLParam(r, "order_id")
	if !web.CheckID(raw) {
		s.writeError(w, r, ErrNotFound)
		return
	}
	orderID, ok := parseOrderID(raw)
	if !ok {
		s.writeError(w, r, ErrNotFound)
		return
	}
	ctx := telemetry.WithLogAttrs(r.Context(), slog.String(telemetry.LogOrderID, orderID.String()))
	trace.SpanFromContext(ctx).SetAttributes(telemetry.OrderID.String(orderID.String()))
	r = r.WithContext(ctx)
	sh, err := getShipment(ctx, s.pool, orderID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	web.Encode(w, http.StatusOK, shipmentResponse{OrderID: sh.OrderID, TrackingNumber: sh.TrackingNumber, Status: sh.Status})
}

// writeError is the one place errors become problem responses.
func (s *service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var reqErr *web.RequestError
	switch {
	case errors.As(err, &reqErr):
		web.WriteProblem(w, reqErr.Problem())
	case errors.Is(err, ErrNotFound):
		web.WriteProblem(w, web.Problem{Status: http.StatusNotFound, Detail: "no shipment for this order"})
	default:
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		web.WriteProblem(w, web.Problem{Status: http.StatusInternalServerError})
	}
}
