package outbox

import (
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sagashop/sagashop/pkg/web"
)

// AdminRoutes mounts the operator's endpoints of the outbox's dead letters
// on r:
//
//	GET  /admin/outbox/dead-letters?limit=N      the oldest N (default 100, at most 1000)
//	POST /admin/outbox/dead-letters/{id}/requeue moves one back into the outbox
//
// Like every /admin route today they have no access control of their own: a
// later change puts an operator scope on /admin.
func AdminRoutes(pool *pgxpool.Pool) func(r chi.Router) {
	problems := web.Problems{
		ErrDeadLetterNotFound: {Status: http.StatusNotFound, Title: "dead letter not found", Detail: "no outbox dead letter has this id (requeued already, or never one)"},
	}
	return func(r chi.Router) {
		r.Get("/admin/outbox/dead-letters", func(w http.ResponseWriter, req *http.Request) {
			limit := 100
			if v := req.URL.Query().Get("limit"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 1000 {
					problems.Write(w, req, web.Invalid(map[string]string{"limit": "want an integer from 1 to 1000"}))
					return
				}
				limit = n
			}
			dl, err := ListDeadLetters(req.Context(), pool, limit)
			if err != nil {
				problems.Write(w, req, err)
				return
			}
			if dl == nil {
				dl = []DeadLetter{}
			}
			web.Encode(w, http.StatusOK, map[string]any{"dead_letters": dl})
		})
		r.Post("/admin/outbox/dead-letters/{id}/requeue", func(w http.ResponseWriter, req *http.Request) {
			id, err := strconv.ParseInt(chi.URLParam(req, "id"), 10, 64)
			if err != nil || id < 1 {
				// It names no dead letter.
				problems.Write(w, req, &web.RequestError{Status: http.StatusNotFound, Detail: "invalid id"})
				return
			}
			newID, err := Requeue(req.Context(), pool, id)
			if err != nil {
				problems.Write(w, req, err)
				return
			}
			web.Encode(w, http.StatusOK, map[string]any{"id": id, "outbox_id": newID})
		})
	}
}
