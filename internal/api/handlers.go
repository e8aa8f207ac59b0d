package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
	"github.com/thon-dev/thon/wire"
)

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	gs, err := s.st.Groups(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(gs, s.group))
	return nil
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req wire.GroupRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := config.ValidName("group", req.Name); err != nil {
		return badRequest{err}
	}
	if err := s.orch.CreateGroup(r.Context(), actor(r), req.Name); err != nil {
		return err
	}
	g, err := s.st.Group(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.group(g))
	return nil
}

func (s *Server) renameGroup(w http.ResponseWriter, r *http.Request) error {
	from, err := name(r, "group")
	if err != nil {
		return err
	}
	var req wire.GroupRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := config.ValidName("group", req.Name); err != nil {
		return badRequest{err}
	}
	res, err := s.orch.RenameGroup(detached(r), actor(r), from, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(res, toResult))
	return nil
}

// group is a group on the wire, with the template its sandboxes use.
func (s *Server) group(g store.Group) wire.Group {
	out := toGroup(g)
	out.Template = s.orch.SettingsFor(g.Name).Template
	return out
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.orch.Templates(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(ts, toTemplate))
	return nil
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "group")
	if err != nil {
		return err
	}
	g, err := s.st.Group(r.Context(), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.group(g))
	return nil
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "group")
	if err != nil {
		return err
	}
	if err := s.orch.DeleteGroup(r.Context(), actor(r), n); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	groups := r.URL.Query()["group"]
	for _, g := range groups {
		if err := config.ValidName("group", g); err != nil {
			return badRequest{err}
		}
	}
	us, err := s.st.Users(r.Context(), groups...)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(us, toUser))
	return nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	var req wire.UserRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	for kind, v := range map[string]string{"user": req.Name, "group": req.Group} {
		if err := config.ValidName(kind, v); err != nil {
			return badRequest{err}
		}
	}
	if err := s.orch.CreateUser(r.Context(), actor(r), req.Name, req.Group); err != nil {
		return err
	}
	u, err := s.st.User(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, toUser(u))
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	u, err := s.st.User(r.Context(), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUser(u))
	return nil
}

// patchUser moves a user to another group; their sandbox follows.
func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	var req wire.MoveRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := config.ValidName("group", req.Group); err != nil {
		return badRequest{err}
	}
	res, err := s.orch.MoveUser(detached(r), actor(r), n, req.Group)
	if err != nil {
		return err
	}
	writeResult(w, res)
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	purge, err := boolQuery(r, "purge")
	if err != nil {
		return err
	}
	if err := s.orch.DeleteUser(detached(r), actor(r), n, purge); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listSandboxes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := orchestrator.Filter{Groups: q["group"], Users: q["user"]}
	if err := validFilter(f); err != nil {
		return err
	}
	list, err := s.orch.List(r.Context(), f)
	if err != nil {
		return err
	}
	for i := range list {
		list[i].URL = s.url(list[i].User)
	}
	out := wire.SandboxList{Items: each(list, toStatus), Orphans: each(s.orch.Orphans(), toInstance), Resources: toResources(s.orch.Usage())}
	if since, err := s.orch.EngineDown(); err != nil {
		out.EngineError, out.EngineDownSince = err.Error(), since.UTC()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// exportSandbox downloads a participant's workspace as .tar.gz.
func (s *Server) exportSandbox(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	return s.orch.ServeExport(w, r, actor(r), n)
}

// exportGroup downloads a group's workspaces, with a manifest, as one .tar.gz.
func (s *Server) exportGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := name(r, "group")
	if err != nil {
		return err
	}
	return s.orch.ServeGroupExport(w, r, actor(r), g)
}

func validFilter(f orchestrator.Filter) error {
	for _, g := range f.Groups {
		if err := config.ValidName("group", g); err != nil {
			return badRequest{err}
		}
	}
	for _, u := range f.Users {
		if err := config.ValidName("user", u); err != nil {
			return badRequest{err}
		}
	}
	return nil
}

func (s *Server) getSandbox(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	st, err := s.orch.Get(r.Context(), n)
	if err != nil {
		return err
	}
	st.URL = s.url(n)
	writeJSON(w, http.StatusOK, toStatus(st))
	return nil
}

func (s *Server) sandboxAction(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	a, err := orchestrator.ParseAction(r.PathValue("action"))
	if err != nil || a == orchestrator.ActionRemove {
		return badRequestf("unknown action %q: use start, stop, pause, resume or recreate (DELETE removes)", r.PathValue("action"))
	}
	return s.runOne(w, r, a, n, false)
}

// renewSandbox gives a sandbox more time (sandbox.max_lifetime); an
// expired one starts again.
func (s *Server) renewSandbox(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	var req wire.RenewRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	var d time.Duration
	if req.For != "" {
		if d, err = time.ParseDuration(req.For); err != nil || d <= 0 {
			return badRequestf("for=%q: a duration such as 2h or 90m, or leave it out for sandbox.max_lifetime", req.For)
		}
	}
	exp, err := s.orch.Renew(detached(r), actor(r), n, d)
	if err != nil {
		return err
	}
	st, err := s.orch.Get(r.Context(), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.Renewed{User: n, Expires: exp, State: st.State})
	return nil
}

func (s *Server) deleteSandbox(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	purge, err := boolQuery(r, "purge")
	if err != nil {
		return err
	}
	return s.runOne(w, r, orchestrator.ActionRemove, n, purge)
}

// runOne runs one action and answers with its result.
func (s *Server) runOne(w http.ResponseWriter, r *http.Request, a orchestrator.Action, user string, purge bool) error {
	res, err := s.orch.Do(detached(r), actor(r), a, user, purge)
	if err != nil {
		return err
	}
	writeResult(w, res)
	return nil
}

// writeResult answers 200 with the result, or 502 when the engine refused the action.
func writeResult(w http.ResponseWriter, res orchestrator.Result) {
	status := http.StatusOK
	if res.Outcome == orchestrator.OutcomeFailed {
		status = http.StatusBadGateway
	}
	writeJSON(w, status, toResult(res))
}

// bulk runs an action on many sandboxes. Asked with Accept:
// application/x-ndjson it streams progress lines, then the summary; bad
// requests and engine problems are refused with an error status before the
// stream starts.
func (s *Server) bulk(w http.ResponseWriter, r *http.Request) error {
	var req wire.BulkRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	a, err := orchestrator.ParseAction(req.Action)
	if err != nil {
		return badRequest{err}
	}
	f := orchestrator.Filter{Groups: req.Groups, Users: req.Users}
	if err := validFilter(f); err != nil {
		return err
	}
	plan, err := s.orch.PlanBulk(r.Context(), a, f)
	if err != nil {
		return err
	}
	opts := orchestrator.BulkOptions{Purge: req.Purge}
	if !strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
		writeJSON(w, http.StatusOK, toSummary(plan.Run(detached(r), actor(r), opts)))
		return nil
	}
	// Streamed: progress lines as they happen, so a terminal can draw bars.
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(l wire.BulkLine) {
		enc.Encode(l)
		rc.Flush()
	}
	opts.Progress = func(p orchestrator.Progress) {
		wp := toProgress(p)
		send(wire.BulkLine{Progress: &wp})
	}
	sum := toSummary(plan.Run(detached(r), actor(r), opts))
	send(wire.BulkLine{Summary: &sum})
	return nil
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	follow, err := boolQuery(r, "follow")
	if err != nil {
		return err
	}
	tail := 0
	if v := r.URL.Query().Get("tail"); v != "" {
		if tail, err = strconv.Atoi(v); err != nil || tail < 0 {
			return badRequestf("query tail=%q: use a number of lines ≥ 0", v)
		}
	}
	rc, err := s.orch.Logs(r.Context(), n, sandbox.LogOptions{Tail: tail, Follow: follow})
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !follow {
		io.Copy(w, rc)
		return nil
	}
	rc2 := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		k, err := rc.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return nil
			}
			rc2.Flush()
		}
		if err != nil {
			return nil
		}
	}
}

func (s *Server) listOrphans(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, each(s.orch.Orphans(), toInstance))
	return nil
}

func (s *Server) deleteOrphans(w http.ResponseWriter, r *http.Request) error {
	purge, err := boolQuery(r, "purge")
	if err != nil {
		return err
	}
	res, err := s.orch.RemoveOrphans(detached(r), actor(r), purge)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(res, toResult))
	return nil
}

func (s *Server) reconcile(w http.ResponseWriter, r *http.Request) error {
	rep, err := s.orch.Reconcile(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toReconcileReport(rep))
	return nil
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, limit := int64(0), 100
	var err error
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return badRequestf("query after=%q: use an event id", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return badRequestf("query limit=%q: use 1 to 1000", v)
		}
	}
	evs, err := s.st.Events(r.Context(), after, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(evs, toEvent))
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// detached is the context of a request that changes sandboxes: the work goes
// on when the client goes away (an organizer's Ctrl-C, a dropped connection),
// so no sandbox is left half-made; progress is simply no longer reported.
func detached(r *http.Request) context.Context { return context.WithoutCancel(r.Context()) }

// url is a participant's IDE address through the front door ("" without one).
func (s *Server) url(user string) string {
	if s.addrs == nil {
		return ""
	}
	return s.addrs.URL(user)
}
