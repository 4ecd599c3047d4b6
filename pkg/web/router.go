package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagashop/sagashop/pkg/telemetry"
)

// RouterConfig is what every service's router needs.
type RouterConfig struct {
	Service        string
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Registry       *prometheus.Registry // served on /metrics
	Ready          map[string]Ready     // checked by /readyz, by name
}

// NewRouter returns a chi router with the shared middleware (panic
// recovery, request metrics, span naming by route, one log line for a
// request that failed) and the shared endpoints GET /livez, GET /readyz and
// GET /metrics. Add the service's routes to it, then serve Handler(router,
// cfg). It fails when the metrics cannot be registered.
func NewRouter(cfg RouterConfig) (*chi.Mux, error) {
	r := chi.NewRouter()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "HTTP requests by method, route and status.",
	}, []string{"method", "route", "status"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "HTTP request duration by method and route.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route"})
	for _, c := range []prometheus.Collector{requests, duration} {
		if err := cfg.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("register http metrics: %w", err)
		}
	}

	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					cfg.Logger.ErrorContext(req.Context(), "panic in handler", "panic", v, "stack", string(debug.Stack()))
					sw.err = nil // logged here
					if !sw.wrote {
						WriteProblem(sw, Problem{Status: http.StatusInternalServerError})
					}
				}
				route := "unmatched"
				if rc := chi.RouteContext(req.Context()); rc != nil && rc.RoutePattern() != "" {
					route = rc.RoutePattern()
				}
				trace.SpanFromContext(req.Context()).SetName(req.Method + " " + route)
				sw.logError(cfg.Logger, req.Method, route)
				requests.WithLabelValues(req.Method, route, strconv.Itoa(sw.status)).Inc()
				duration.WithLabelValues(req.Method, route).Observe(time.Since(start).Seconds())
			}()
			next.ServeHTTP(sw, req)
		})
	})
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		WriteProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such resource"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		allowed := allowedMethods(r, req)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		WriteProblem(w, Problem{Status: http.StatusMethodNotAllowed,
			Detail: fmt.Sprintf("%s is not allowed on this resource; it allows %s", req.Method, strings.Join(allowed, ", "))})
	})
	r.Get("/livez", func(w http.ResponseWriter, _ *http.Request) {
		Encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", readyHandler(cfg.Ready))
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	return r, nil
}

// methods are the methods a 405 may list in its Allow header.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect}

// allowedMethods returns the methods r routes for req's path (RFC 9110,
// 15.5.6: a 405 says them in Allow). chi's own 405 handler sets Allow, but
// a custom one is given only the request.
func allowedMethods(r *chi.Mux, req *http.Request) []string {
	path := req.URL.RawPath
	if path == "" {
		path = req.URL.Path
	}
	var allowed []string
	for _, m := range methods {
		if r.Match(chi.NewRouteContext(), m, path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// Handler wraps router in OpenTelemetry HTTP instrumentation: a server span
// per request, continuing a caller's W3C trace context.
func Handler(router http.Handler, cfg RouterConfig) http.Handler {
	return otelhttp.NewHandler(router, cfg.Service,
		otelhttp.WithTracerProvider(cfg.TracerProvider),
		otelhttp.WithPropagators(telemetry.Propagator()),
		otelhttp.WithFilter(func(r *http.Request) bool {
			// Probes and scrapes would bury the saga's traces.
			return r.URL.Path != "/livez" && r.URL.Path != "/readyz" && r.URL.Path != "/metrics"
		}),
	)
}

func readyHandler(checks map[string]Ready) http.HandlerFunc {
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status := map[string]string{}
		failed := map[string]string{}
		for _, n := range names {
			if err := checks[n](ctx); err != nil {
				failed[n] = "unreachable"
				continue
			}
			status[n] = "ok"
		}
		if len(failed) > 0 {
			WriteProblem(w, Problem{Status: http.StatusServiceUnavailable, Detail: "not ready", Errors: failed})
			return
		}
		Encode(w, http.StatusOK, status)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool

	// The error a handler answered with (Problems.Write), and the context
	// it was handling the request in, whose log attributes the line gets.
	err    error
	errCtx context.Context
}

func (w *statusWriter) recordError(ctx context.Context, err error) { w.err, w.errCtx = err, ctx }

// logError writes the one log line of a request answered with an error:
// at error level for a 5xx, with the error, at warn for a 503 (the database
// is away for now: nothing to fix in the service), at info for a refusal.
func (w *statusWriter) logError(logger *slog.Logger, method, route string) {
	if w.err == nil {
		return
	}
	attrs := []any{"method", method, "route", route, telemetry.LogStatus, w.status, telemetry.Err(w.err)}
	if w.status == http.StatusServiceUnavailable {
		logger.WarnContext(w.errCtx, "request failed", attrs...)
		return
	}
	if w.status >= 500 {
		logger.ErrorContext(w.errCtx, "request failed", attrs...)
		return
	}
	logger.InfoContext(w.errCtx, "request refused", attrs...)
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
