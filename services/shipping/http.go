package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sagashop/sagashop/pkg/telemetry"
	"github.com/sagashop/sagashop/pkg/web"
)

// problems is how the shipping API answers its domain errors; everything
// else is a 500 (web.Problems.Write).
var problems = web.Problems{
	ErrNotFound: {Status: http.StatusNotFound, Title: "shipment not found", Detail: "no shipment for this order"},
}

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

// handleGetShipment: GET /shipments/{order_id} → 200 with the shipment, 404
// if there is none (or the id is no UUID).
func (s *service) handleGetShipment(w http.ResponseWriter, r *http.Request) {
	orderID, err := web.PathUUID(r, "order_id")
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	r = r.WithContext(telemetry.ConcernsOrder(r.Context(), orderID.String()))
	sh, err := s.shipment(r.Context(), orderID)
	if err != nil {
		problems.Write(w, r, err)
		return
	}
	web.Encode(w, http.StatusOK, shipmentResponse{OrderID: sh.OrderID, TrackingNumber: sh.TrackingNumber, Status: sh.Status})
}
