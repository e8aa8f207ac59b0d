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
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/configfiles"
	"github.com/thon-dev/thon/internal/doctor"
	"github.com/thon-dev/thon/internal/frontdoor"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
	"github.com/thon-dev/thon/wire"
)

// Info describes the running daemon; TLSStatus what the front door's
// certificates are (both in GET /api/v1/info).
type (
	Info      = wire.Info
	TLSStatus = wire.TLSStatus
	TLSName   = wire.TLSName
)

// Options configures the API.
type Options struct {
	Orchestrator *orchestrator.Orchestrator
	Store        store.Records
	// Access issues links, passwords and invites; Addresses says where
	// things are; Tokens checks and makes API tokens.
	Access    *access.Service
	Addresses *frontdoor.Addresses
	Tokens    *auth.Tokens
	// Files are the configuration files kept in the database.
	Files *configfiles.Service
	// Keys is the AI gateway's key ring (nil when the gateway is off).
	Keys GatewayKeys
	// Admins accepts the dashboard's session cookie besides bearer tokens
	// (nil: tokens only).
	Admins *auth.Admins
	// LLM is the LLM server's management (nil: every /llm route says
	// llm.enabled is false).
	LLM LLM
	// Metrics serves Prometheus metrics at /metrics (on server.listen only:
	// the front door mounts /api/ alone).
	Metrics http.Handler
	// Queues is the gateway's slots and queue per model, for the stream's
	// queue events (nil when the gateway is off).
	Queues func() []gateway.QueueStat
	Logger *slog.Logger
	Info   Info
	// TLS says which certificates the front door serves (nil: not known).
	TLS func() TLSStatus
	// Shutdown is called (once) by POST /api/v1/shutdown, with who asked.
	Shutdown func(actor string)
	// Doctor runs thon doctor's checks (nil: GET /api/v1/doctor says so).
	Doctor func(ctx context.Context, probe bool) doctor.Report
}

// Server serves the REST API.
type Server struct {
	keys     GatewayKeys
	llm      LLM
	admins   *auth.Admins
	tokens   *auth.Tokens
	files    *configfiles.Service
	access   *access.Service
	addrs    *frontdoor.Addresses
	metrics  http.Handler
	queues   func() []gateway.QueueStat
	orch     *orchestrator.Orchestrator
	st       store.Records
	log      *slog.Logger
	info     Info
	tls      func() TLSStatus
	shutdown func(actor string)
	doctor   func(ctx context.Context, probe bool) doctor.Report
	mux      *http.ServeMux

	closeStreams sync.Once
	streamsEnd   chan struct{} // closed by CloseStreams
}

type ctxKey struct{}

// New builds the API handler.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{keys: o.Keys, llm: o.LLM, admins: o.Admins, tokens: o.Tokens, files: o.Files, access: o.Access, addrs: o.Addresses,
		metrics: o.Metrics, queues: o.Queues, orch: o.Orchestrator, st: o.Store, log: o.Logger, info: o.Info, tls: o.TLS, shutdown: o.Shutdown, doctor: o.Doctor, mux: http.NewServeMux(),
		streamsEnd: make(chan struct{})}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// route is one API route; the list drives the mux, the authorization and
// the test that keeps the OpenAPI document complete (every operation
// declares the route's scope).
type route struct {
	method, pattern string
	// scope a token or session needs; public for none at all.
	scope string
	// self: participants may call it for themselves ({user} is theirs; the
	// handler narrows anything else to them).
	self bool
	h    handler
}

// public marks a route that needs no credentials.
const public = "public"

// handler is an API handler: it writes its answer, or returns the error
// that fail turns into one.
type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) routeTable() []route {
	const (
		sbR, sbW   = auth.ScopeSandboxesRead, auth.ScopeSandboxesWrite
		usR, usW   = auth.ScopeUsersRead, auth.ScopeUsersWrite
		gwR, gwW   = auth.ScopeGatewayRead, auth.ScopeGatewayWrite
		llmR, llmW = auth.ScopeLLMRead, auth.ScopeLLMWrite
		evR, sys   = auth.ScopeEventsRead, auth.ScopeSystem
	)
	return []route{
		{"GET", "/api/v1/health", public, false, s.health},
		{"GET", "/api/v1/openapi.json", public, false, serveOpenAPI},
		{"GET", "/api/v1/me", "", true, s.me},
		{"GET", "/api/v1/info", sys, false, s.getInfo},
		{"GET", "/api/v1/doctor", sys, false, s.getDoctor},
		{"POST", "/api/v1/shutdown", sys, false, s.postShutdown},
		{"POST", "/api/v1/import", sys, false, s.postImport},
		{"GET", "/api/v1/files", sys, false, s.listFiles},
		{"GET", "/api/v1/files/{name}", sys, false, s.getFile},
		{"PUT", "/api/v1/files/{name}", sys, false, s.putFile},
		{"DELETE", "/api/v1/files/{name}", sys, false, s.deleteFile},
		{"GET", "/api/v1/tokens", sys, false, s.listTokens},
		{"POST", "/api/v1/tokens", sys, false, s.createToken},
		{"DELETE", "/api/v1/tokens/{name}", sys, false, s.revokeToken},
		{"GET", "/api/v1/invites", usR, false, s.listInvites},
		{"POST", "/api/v1/invites", usW, false, s.createInvite},
		{"DELETE", "/api/v1/invites/{id}", usW, false, s.revokeInvite},
		{"GET", "/api/v1/groups", usR, false, s.listGroups},
		{"POST", "/api/v1/groups", usW, false, s.createGroup},
		{"GET", "/api/v1/groups/{group}", usR, false, s.getGroup},
		{"DELETE", "/api/v1/groups/{group}", usW, false, s.deleteGroup},
		{"POST", "/api/v1/groups/{group}/rename", usW, false, s.renameGroup},
		{"GET", "/api/v1/templates", sbR, false, s.listTemplates},
		{"GET", "/api/v1/users", usR, false, s.listUsers},
		{"POST", "/api/v1/users", usW, false, s.createUser},
		{"POST", "/api/v1/users/import", usW, false, s.importUsers},
		{"GET", "/api/v1/users/{user}", usR, true, s.getUser},
		{"PATCH", "/api/v1/users/{user}", usW, false, s.patchUser},
		{"DELETE", "/api/v1/users/{user}", usW, false, s.deleteUser},
		{"POST", "/api/v1/users/{user}/access", usW, true, s.issueLink},
		{"DELETE", "/api/v1/users/{user}/access", usW, false, s.revokeAccess},
		{"PUT", "/api/v1/users/{user}/password", usW, false, s.setPassword},
		{"DELETE", "/api/v1/users/{user}/password", usW, false, s.deletePassword},
		{"POST", "/api/v1/access", usW, false, s.issueLinks},
		{"GET", "/api/v1/gateway/keys", gwR, false, s.listKeys},
		{"POST", "/api/v1/gateway/keys/{id}/rotate", gwW, false, s.rotateKey},
		{"DELETE", "/api/v1/gateway/keys/{id}", gwW, false, s.revokeKey},
		{"GET", "/api/v1/gateway/usage", gwR, true, s.usage},
		{"GET", "/api/v1/gateway/usage/summary", gwR, true, s.usageSummary},
		{"POST", "/api/v1/gateway/usage", gwW, false, s.addUsage},
		{"GET", "/api/v1/gateway/lookup", gwR, false, s.lookupKey},
		{"GET", "/api/v1/llm", llmR, false, s.needLLM(s.llmStatus)},
		{"GET", "/api/v1/llm/models", llmR, false, s.needLLM(s.llmModels)},
		{"POST", "/api/v1/llm/pull", llmW, false, s.needLLM(s.llmPull)},
		{"POST", "/api/v1/llm/load", llmW, false, s.needLLM(s.llmLoad)},
		{"POST", "/api/v1/llm/unload", llmW, false, s.needLLM(s.llmUnload)},
		{"GET", "/api/v1/llm/scale", llmR, false, s.needLLM(s.llmPlan)},
		{"POST", "/api/v1/llm/scale", llmW, false, s.needLLM(s.llmApply)},
		{"GET", "/api/v1/sandboxes", sbR, false, s.listSandboxes},
		{"POST", "/api/v1/sandboxes/bulk", sbW, false, s.bulk},
		{"GET", "/api/v1/sandboxes/{user}", sbR, true, s.getSandbox},
		{"DELETE", "/api/v1/sandboxes/{user}", sbW, false, s.deleteSandbox},
		{"POST", "/api/v1/sandboxes/{user}/{action}", sbW, true, s.sandboxAction},
		{"POST", "/api/v1/sandboxes/{user}/renew", sbW, false, s.renewSandbox},
		{"GET", "/api/v1/sandboxes/{user}/logs", sbR, true, s.logs},
		{"GET", "/api/v1/sandboxes/{user}/export", sbW, true, s.exportSandbox},
		{"GET", "/api/v1/groups/{group}/export", sbW, false, s.exportGroup},
		{"GET", "/api/v1/orphans", sbR, false, s.listOrphans},
		{"DELETE", "/api/v1/orphans", sbW, false, s.deleteOrphans},
		{"POST", "/api/v1/reconcile", sbW, false, s.reconcile},
		{"GET", "/api/v1/events", evR, false, s.events},
		{"GET", "/api/v1/stream", evR, false, s.stream},
	}
}

func (s *Server) routes() {
	for _, rt := range s.routeTable() {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := rt.h(w, r); err != nil {
				s.fail(w, r, err)
			}
		})
		if rt.scope != public {
			h = s.authenticated(rt, h)
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
func (s *Server) authenticated(rt route, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.principal(w, r)
		if !ok {
			return
		}
		switch {
		case p.Role == auth.RoleParticipant && !rt.self:
			writeError(w, http.StatusForbidden, "participants may not do this", "a participant reaches their own sandbox, key and usage only")
			return
		case p.Role == auth.RoleParticipant && r.PathValue("user") != "" && r.PathValue("user") != p.User:
			writeError(w, http.StatusForbidden, "this is another participant's", "a participant reaches their own sandbox, key and usage only")
			return
		case p.Role != auth.RoleParticipant && !p.Allows(rt.scope):
			writeError(w, http.StatusForbidden, fmt.Sprintf("this token lacks the %s scope", rt.scope), "create a token with it: thon token create NAME --scope "+rt.scope)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	}
}

// principal finds who makes the request: a bearer token (API tokens,
// including the admin token) or the dashboard's session cookie. It answers
// 401 itself when there is neither or it does not check out.
func (s *Server) principal(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		if c, err := r.Cookie(auth.AdminCookie); err == nil && s.admins != nil {
			return s.sessionPrincipal(w, r, c.Value)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="thon"`)
		writeError(w, http.StatusUnauthorized, "missing bearer token", "send Authorization: Bearer <token> (the admin token is in the data directory, file admin.token)")
		return auth.Principal{}, false
	}
	p, err := s.tokens.Authenticate(r.Context(), tok)
	var refused *auth.TokenRefused
	if errors.As(err, &refused) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="thon", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, refused.Reason, "")
		return auth.Principal{}, false
	}
	if err != nil {
		s.fail(w, r, err)
		return auth.Principal{}, false
	}
	return p, true
}

// sessionPrincipal serves a request signed in by the dashboard's session
// cookie. A request that changes anything must come from THON's own pages:
// the session's anti-forgery token in X-CSRF-Token, and no foreign Origin.
func (s *Server) sessionPrincipal(w http.ResponseWriter, r *http.Request, token string) (auth.Principal, bool) {
	sess, err := s.admins.Session(r.Context(), token)
	if errors.Is(err, auth.ErrNoSession) {
		writeError(w, http.StatusUnauthorized, "your dashboard session has ended", "sign in again")
		return auth.Principal{}, false
	}
	if err != nil {
		s.fail(w, r, err)
		return auth.Principal{}, false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if !auth.SameOrigin(r) {
			writeError(w, http.StatusForbidden, "request from another site refused", "")
			return auth.Principal{}, false
		}
		if !auth.CheckCSRF(sess, r.Header.Get("X-CSRF-Token")) {
			writeError(w, http.StatusForbidden, "missing or wrong X-CSRF-Token", "reload the page")
			return auth.Principal{}, false
		}
	}
	role := sess.Role
	if role == "" {
		role = auth.RoleAdmin
	}
	return auth.Principal{Name: sess.Actor, Role: role, Scopes: []string{auth.ScopeAll}, User: sess.User, Via: "session"}, true
}

func actor(r *http.Request) string {
	if p, ok := r.Context().Value(ctxKey{}).(auth.Principal); ok {
		return p.Name
	}
	return "anonymous"
}

// principalOf is who makes the request (the zero Principal on public routes).
func principalOf(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(ctxKey{}).(auth.Principal)
	return p
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, toPrincipal(principalOf(r)))
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg, hint string) {
	writeJSON(w, status, wire.Error{Error: msg, Hint: hint})
}

// fail maps an error to its HTTP status and a message that says what to do.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *config.ValidationError
	var ue *sandbox.UserError
	var be badRequest
	var pr config.Problem
	var je *access.JoinError
	var fe *configfiles.InvalidError
	switch {
	case errors.As(err, &fe):
		writeJSON(w, http.StatusUnprocessableEntity, fileProblems(fe))
	case errors.As(err, &pr):
		writeError(w, http.StatusBadRequest, pr.Msg, pr.Hint)
	case errors.As(err, &je):
		writeError(w, je.Status, je.Msg, "")
	case errors.As(err, &ve):
		writeJSON(w, http.StatusUnprocessableEntity, wire.Error{Error: "invalid configuration", Problems: each(ve.Problems, toProblem)})
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
	case store.DiskFull(err):
		s.log.Error("api request refused: the disk of the store is full", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInsufficientStorage, "the disk holding THON's data is full: nothing was changed",
			"free space on the disk of server.data_dir (or the database server's); THON goes on by itself once there is room")
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
	writeJSON(w, http.StatusOK, wire.Health{Status: "ok", Version: s.info.Version})
	return nil
}

func (s *Server) getInfo(w http.ResponseWriter, r *http.Request) error {
	settings, err := json.Marshal(s.orch.Settings())
	if err != nil {
		return err
	}
	out := wire.InfoDetail{Info: s.info, Sandbox: settings}
	if s.tls != nil {
		t := s.tls()
		out.TLS = &t
	}
	if s.addrs != nil {
		out.FrontDoor, out.Dashboard = s.addrs.MainURL(), s.addrs.DashboardURL()
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
	writeJSON(w, http.StatusAccepted, wire.Shutdown{Status: "shutting down"})
	if f, ok := w.(http.Flusher); ok {
		f.Flush() // the answer leaves before the daemon closes its connections
	}
	if s.shutdown != nil {
		go s.shutdown(actor(r))
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
	writeJSON(w, http.StatusOK, toImportResult(res))
	return nil
}
