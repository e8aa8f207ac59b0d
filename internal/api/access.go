package api

import (
	"net/http"
	"time"

	"github.com/thon-dev/thon/internal/orchestrator"
)

// issueLink creates a personal access link for one participant.
func (s *Server) issueLink(w http.ResponseWriter, r *http.Request) {
	n, err := name(r, "user")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l, err := s.access.IssueLink(r.Context(), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.st.AddEvent(r.Context(), actor(r), "access.link", n, "expires "+l.Expires.Format("2006-01-02 15:04 MST"))
	writeJSON(w, http.StatusCreated, l)
}

// LinksRequest selects participants for POST /api/v1/access.
type LinksRequest struct {
	Groups []string `json:"groups,omitempty"`
	Users  []string `json:"users,omitempty"`
}

// LinkItem is one participant's link, with their group (for printed cards).
type LinkItem struct {
	User    string    `json:"user"`
	Group   string    `json:"group"`
	URL     string    `json:"url"`
	Link    string    `json:"link"`
	Expires time.Time `json:"expires"`
}

// issueLinks creates links for many participants: a group's access cards.
func (s *Server) issueLinks(w http.ResponseWriter, r *http.Request) {
	var req LinksRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	f := orchestrator.Filter{Groups: req.Groups, Users: req.Users}
	if err := validFilter(f); err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.orch.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]LinkItem, 0, len(list))
	for _, st := range list {
		l, err := s.access.IssueLink(r.Context(), st.User)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = append(out, LinkItem{User: l.User, Group: st.Group, URL: l.URL, Link: l.Link, Expires: l.Expires})
	}
	s.st.AddEvent(r.Context(), actor(r), "access.links", f.String(), "")
	writeJSON(w, http.StatusCreated, out)
}

// RevokeResult says what a revocation ended.
type RevokeResult struct {
	Tokens   int64 `json:"tokens"`
	Sessions int64 `json:"sessions"`
}

func (s *Server) revokeAccess(w http.ResponseWriter, r *http.Request) {
	n, err := name(r, "user")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	t, ss, err := s.access.Revoke(r.Context(), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.st.AddEvent(r.Context(), actor(r), "access.revoke", n, "")
	writeJSON(w, http.StatusOK, RevokeResult{Tokens: t, Sessions: ss})
}

func (s *Server) setPassword(w http.ResponseWriter, r *http.Request) {
	n, err := name(r, "user")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req struct {
		Password string `json:"password"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if l := len(req.Password); l < 8 || l > 72 {
		s.fail(w, r, badRequestf("a password needs 8 to 72 characters, got %d", l))
		return
	}
	if err := s.access.SetPassword(r.Context(), n, req.Password); err != nil {
		s.fail(w, r, err)
		return
	}
	s.st.AddEvent(r.Context(), actor(r), "access.password", n, "set")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deletePassword(w http.ResponseWriter, r *http.Request) {
	n, err := name(r, "user")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.access.SetPassword(r.Context(), n, ""); err != nil {
		s.fail(w, r, err)
		return
	}
	s.st.AddEvent(r.Context(), actor(r), "access.password", n, "removed")
	w.WriteHeader(http.StatusNoContent)
}
