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

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/frontdoor"
	"github.com/thon-dev/thon/internal/gateway"
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
	// Queues is the gateway's slots and queue per model, for the stream's
	// queue events (nil when the gateway is off).
	Queues func() []gateway.QueueStat
	Logger *slog.Logger
	Info   Info
	// Shutdown is called (once) by POST /api/v1/shutdown.
	Shutdown func()
}

// Server serves the REST API.
type Server struct {
	keys          GatewayKeys
	onKeysChanged func()
	llm           LLM
	admins        *auth.Admins
	touchMu       sync.Mutex
	touched       map[string]time.Time // token → when its use was last recorded
	access        Access
	metrics       http.Handler
	queues        func() []gateway.QueueStat
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
	s := &Server{keys: o.Keys, onKeysChanged: o.OnKeysChanged, llm: o.LLM, admins: o.Admins, touched: map[string]time.Time{}, access: o.Access, metrics: o.Metrics, queues: o.Queues, orch: o.Orchestrator, st: o.Store, log: o.Logger, info: o.Info, shutdown: o.Shutdown, mux: http.NewServeMux()}
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
		{"POST", "/api/v1/shutdown", sys, false, s.postShutdown},
		{"POST", "/api/v1/import", sys, false, s.postImport},
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
		{"GET", "/api/v1/sandboxes/{user}/logs", sbR, true, s.logs},
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
	t, err := s.st.TokenRecord(r.Context(), auth.HashToken(strings.TrimSpace(tok)))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, fmt.Errorf("check token: %w", err))
		return auth.Principal{}, false
	}
	reason := "invalid token"
	if err == nil {
		reason = t.Refusal(time.Now())
	}
	if reason != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="thon", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, reason, "")
		return auth.Principal{}, false
	}
	s.touch(r.Context(), t.Name)
	role := t.Role
	if role != auth.RoleParticipant {
		role = auth.RoleAdmin
	}
	return auth.Principal{Name: t.Name, Role: role, Scopes: t.Scopes, User: t.User, Via: "token"}, true
}

// touch records a token's use, at most once a minute per token.
func (s *Server) touch(ctx context.Context, name string) {
	s.touchMu.Lock()
	last := s.touched[name]
	now := time.Now()
	if now.Sub(last) < time.Minute {
		s.touchMu.Unlock()
		return
	}
	s.touched[name] = now
	s.touchMu.Unlock()
	if err := s.st.TouchToken(context.WithoutCancel(ctx), name); err != nil {
		s.log.Warn("record token use", "token", name, "err", err)
	}
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
		if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
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
	writeJSON(w, http.StatusOK, principalOf(r))
	return nil
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
