// Package api is THON's REST API under /api/v1, described by the OpenAPI 3.1
// document at /api/v1/openapi.json with Swagger UI at /api/docs (served from
// the binary, so it works offline). Handlers stay thin: parse, authorize,
// call the orchestrator or the store, render.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/frontdoor"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// Info describes the running daemon.
type Info struct {
	Version    string    `json:"version"`
	ConfigPath string    `json:"config_path"`
	DataDir    string    `json:"data_dir"`
	Runtime    string    `json:"runtime"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
}

// Access is the front door as the API sees it: participants' URLs and links.
type Access interface {
	MainURL() string
	URL(user string) string
	IssueLink(ctx context.Context, user string) (frontdoor.Link, error)
	Revoke(ctx context.Context, user string) (tokens, sessions int64, err error)
	SetPassword(ctx context.Context, user, password string) error
}

// Options configures the API.
type Options struct {
	Orchestrator *orchestrator.Orchestrator
	Store        *store.Store
	Access       Access
	// Keys is the AI gateway's key ring (nil when the gateway is off);
	// OnKeysChanged runs after a rotation or revocation (the gateway
	// forgets its cached keys).
	Keys          GatewayKeys
	OnKeysChanged func()
	// Admins accepts the dashboard's session cookie besides bearer tokens
	// (nil: tokens only).
	Admins *auth.Admins
	// LLM is the LLM server's management (nil: every /llm route says
	// llm.enabled is false).
	LLM LLM
	// Metrics serves Prometheus metrics at /metrics (on server.listen only:
	// the front door mounts /api/ alone).
	Metrics http.Handler
	Logger  *slog.Logger
	Info    Info
	// Shutdown is called (once) by POST /api/v1/shutdown.
	Shutdown func()
}

// Server serves the REST API.
type Server struct {
	keys          GatewayKeys
	onKeysChanged func()
	llm           LLM
	admins        *auth.Admins
	access        Access
	metrics       http.Handler
	orch          *orchestrator.Orchestrator
	st            *store.Store
	log           *slog.Logger
	info          Info
	shutdown      func()
	mux           *http.ServeMux
}

type ctxKey struct{}

// New builds the API handler.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{keys: o.Keys, onKeysChanged: o.OnKeysChanged, llm: o.LLM, admins: o.Admins, access: o.Access, metrics: o.Metrics, orch: o.Orchestrator, st: o.Store, log: o.Logger, info: o.Info, shutdown: o.Shutdown, mux: http.NewServeMux()}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// route is one API route; the list drives both the mux and the test that
// keeps the OpenAPI document complete.
type route struct {
	method, pattern string
	public          bool
	h               handler
}

// handler is an API handler: it writes its answer, or returns the error
// that fail turns into one.
type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) routeTable() []route {
	return []route{
		{"GET", "/api/v1/health", true, s.health},
		{"GET", "/api/v1/openapi.json", true, serveOpenAPI},
		{"GET", "/api/v1/info", false, s.getInfo},
		{"POST", "/api/v1/shutdown", false, s.postShutdown},
		{"POST", "/api/v1/import", false, s.postImport},
		{"GET", "/api/v1/groups", false, s.listGroups},
		{"POST", "/api/v1/groups", false, s.createGroup},
		{"GET", "/api/v1/groups/{group}", false, s.getGroup},
		{"DELETE", "/api/v1/groups/{group}", false, s.deleteGroup},
		{"POST", "/api/v1/groups/{group}/rename", false, s.renameGroup},
		{"GET", "/api/v1/users", false, s.listUsers},
		{"POST", "/api/v1/users", false, s.createUser},
		{"GET", "/api/v1/users/{user}", false, s.getUser},
		{"PATCH", "/api/v1/users/{user}", false, s.patchUser},
		{"DELETE", "/api/v1/users/{user}", false, s.deleteUser},
		{"POST", "/api/v1/users/{user}/access", false, s.issueLink},
		{"DELETE", "/api/v1/users/{user}/access", false, s.revokeAccess},
		{"PUT", "/api/v1/users/{user}/password", false, s.setPassword},
		{"DELETE", "/api/v1/users/{user}/password", false, s.deletePassword},
		{"POST", "/api/v1/access", false, s.issueLinks},
		{"GET", "/api/v1/gateway/keys", false, s.listKeys},
		{"POST", "/api/v1/gateway/keys/{id}/rotate", false, s.rotateKey},
		{"DELETE", "/api/v1/gateway/keys/{id}", false, s.revokeKey},
		{"GET", "/api/v1/gateway/usage", false, s.usage},
		{"POST", "/api/v1/gateway/usage", false, s.addUsage},
		{"GET", "/api/v1/gateway/lookup", false, s.lookupKey},
		{"GET", "/api/v1/llm", false, s.needLLM(s.llmStatus)},
		{"GET", "/api/v1/llm/models", false, s.needLLM(s.llmModels)},
		{"POST", "/api/v1/llm/pull", false, s.needLLM(s.llmPull)},
		{"POST", "/api/v1/llm/load", false, s.needLLM(s.llmLoad)},
		{"POST", "/api/v1/llm/unload", false, s.needLLM(s.llmUnload)},
		{"GET", "/api/v1/llm/scale", false, s.needLLM(s.llmPlan)},
		{"POST", "/api/v1/llm/scale", false, s.needLLM(s.llmApply)},
		{"GET", "/api/v1/sandboxes", false, s.listSandboxes},
		{"POST", "/api/v1/sandboxes/bulk", false, s.bulk},
		{"GET", "/api/v1/sandboxes/{user}", false, s.getSandbox},
		{"DELETE", "/api/v1/sandboxes/{user}", false, s.deleteSandbox},
		{"POST", "/api/v1/sandboxes/{user}/{action}", false, s.sandboxAction},
		{"GET", "/api/v1/sandboxes/{user}/logs", false, s.logs},
		{"GET", "/api/v1/orphans", false, s.listOrphans},
		{"DELETE", "/api/v1/orphans", false, s.deleteOrphans},
		{"POST", "/api/v1/reconcile", false, s.reconcile},
		{"GET", "/api/v1/events", false, s.events},
		{"GET", "/api/v1/stream", false, s.stream},
	}
}

func (s *Server) routes() {
	for _, rt := range s.routeTable() {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := rt.h(w, r); err != nil {
				s.fail(w, r, err)
			}
		})
		if !rt.public {
			h = s.authenticated(h)
		}
		s.mux.Handle(rt.method+" "+rt.pattern, h)
	}
	if s.metrics != nil {
		s.mux.Handle("GET /metrics", s.metrics)
	}
	s.mux.Handle("GET /api/docs/", http.StripPrefix("/api/docs", docsHandler()))
	s.mux.Handle("GET /api/docs", http.RedirectHandler("/api/docs/", http.StatusMovedPermanently))
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path, "see /api/docs for the API reference")
	})
}

// authenticated requires a valid bearer token.
func (s *Server) authenticated(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			if c, err := r.Cookie(auth.AdminCookie); err == nil && s.admins != nil {
				s.withSession(next, w, r, c.Value)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="thon"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token", "send Authorization: Bearer <token> (the admin token is in the data directory, file admin.token)")
			return
		}
		name, _, err := s.st.TokenByHash(r.Context(), auth.HashToken(strings.TrimSpace(tok)))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.fail(w, r, fmt.Errorf("check token: %w", err))
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="thon", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid token", "")
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, name)))
	}
}

// withSession serves a request signed in by the dashboard's session
// cookie. A request that changes anything must come from THON's own pages:
// the session's anti-forgery token in X-CSRF-Token, and no foreign Origin.
func (s *Server) withSession(next http.HandlerFunc, w http.ResponseWriter, r *http.Request, token string) {
	sess, err := s.admins.Session(r.Context(), token)
	if errors.Is(err, auth.ErrNoSession) {
		writeError(w, http.StatusUnauthorized, "your dashboard session has ended", "sign in again")
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
			writeError(w, http.StatusForbidden, "request from another site refused", "")
			return
		}
		if !auth.CheckCSRF(sess, r.Header.Get("X-CSRF-Token")) {
			writeError(w, http.StatusForbidden, "missing or wrong X-CSRF-Token", "reload the page")
			return
		}
	}
	next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, sess.Actor)))
}

func actor(r *http.Request) string {
	if a, ok := r.Context().Value(ctxKey{}).(string); ok {
		return a
	}
	return "anonymous"
}

// errorBody is every error the API returns.
type errorBody struct {
	Error    string           `json:"error"`
	Hint     string           `json:"hint,omitempty"`
	Problems []config.Problem `json:"problems,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg, hint string) {
	writeJSON(w, status, errorBody{Error: msg, Hint: hint})
}

// fail maps an error to its HTTP status and a message that says what to do.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *config.ValidationError
	var ue *sandbox.UserError
	var be badRequest
	switch {
	case errors.As(err, &ve):
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: "invalid configuration", Problems: ve.Problems})
	case errors.Is(err, errNoGateway), errors.Is(err, errNoLLM):
		writeError(w, http.StatusConflict, err.Error(), "")
	case llmError(w, err):
	case errors.As(err, &be):
		writeError(w, http.StatusBadRequest, be.Error(), "")
	case errors.Is(err, store.ErrNotFound), errors.Is(err, sandbox.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error(), "")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, err.Error(), "")
	case errors.As(err, &ue):
		writeError(w, http.StatusServiceUnavailable, ue.Msg, ue.Hint)
	case errors.Is(err, context.Canceled):
		// The client went away; nothing to answer.
	default:
		s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error(), "")
	}
}

// badRequest is an input error found at the edge.
type badRequest struct{ error }

func badRequestf(format string, args ...any) error { return badRequest{fmt.Errorf(format, args...)} }

const maxBody = 1 << 20

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequestf("request body is empty: send a JSON object")
		}
		return badRequestf("request body: %v", err)
	}
	return nil
}

func name(r *http.Request, kind string) (string, error) {
	v := r.PathValue(kind)
	if err := config.ValidName(kind, v); err != nil {
		return "", badRequest{err}
	}
	return v, nil
}

func boolQuery(r *http.Request, key string) (bool, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequestf("query %s=%q: use true or false", key, v)
	}
	return b, nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.info.Version})
	return nil
}

func (s *Server) getInfo(w http.ResponseWriter, r *http.Request) error {
	type engine struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error,omitempty"`
	}
	out := struct {
		Info
		FrontDoor string         `json:"front_door,omitempty"`
		Dashboard string         `json:"dashboard,omitempty"`
		Engine    engine         `json:"engine"`
		Settings  config.Sandbox `json:"sandbox"`
	}{Info: s.info, Settings: s.orch.Settings()}
	if s.access != nil {
		out.FrontDoor = s.access.MainURL()
		if d, ok := s.access.(interface{ DashboardURL() string }); ok {
			out.Dashboard = d.DashboardURL()
		}
	}
	out.Engine.Name = s.orch.Runtime().Name()
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := s.orch.Runtime().Ping(ctx); err != nil {
		out.Engine.Error = err.Error()
	} else {
		out.Engine.OK = true
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) postShutdown(w http.ResponseWriter, r *http.Request) error {
	s.st.AddEvent(r.Context(), actor(r), "daemon.shutdown", "", "")
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "shutting down"})
	if s.shutdown != nil {
		go s.shutdown()
	}
	return nil
}

func (s *Server) postImport(w http.ResponseWriter, r *http.Request) error {
	cfg := config.Default()
	if err := decode(r, cfg); err != nil {
		return err
	}
	res, err := s.orch.Import(r.Context(), actor(r), cfg)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
