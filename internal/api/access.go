package api

import (
	"net/http"
	"time"

	"github.com/thon-dev/thon/internal/orchestrator"
)

// issueLink creates a personal access link for one participant.
func (s *Server) issueLink(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	l, err := s.access.IssueLink(r.Context(), n)
	if err != nil {
		return err
	}
	s.st.AddEvent(r.Context(), actor(r), "access.link", n, "expires "+l.Expires.Format("2006-01-02 15:04 MST"))
	writeJSON(w, http.StatusCreated, l)
	return nil
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
func (s *Server) issueLinks(w http.ResponseWriter, r *http.Request) error {
	var req LinksRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	f := orchestrator.Filter{Groups: req.Groups, Users: req.Users}
	if err := validFilter(f); err != nil {
		return err
	}
	list, err := s.orch.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]LinkItem, 0, len(list))
	for _, st := range list {
		l, err := s.access.IssueLink(r.Context(), st.User)
		if err != nil {
			return err
		}
		out = append(out, LinkItem{User: l.User, Group: st.Group, URL: l.URL, Link: l.Link, Expires: l.Expires})
	}
	s.st.AddEvent(r.Context(), actor(r), "access.links", f.String(), "")
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// RevokeResult says what a revocation ended.
type RevokeResult struct {
	Tokens   int64 `json:"tokens"`
	Sessions int64 `json:"sessions"`
}

func (s *Server) revokeAccess(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	t, ss, err := s.access.Revoke(r.Context(), n)
	if err != nil {
		return err
	}
	s.st.AddEvent(r.Context(), actor(r), "access.revoke", n, "")
	writeJSON(w, http.StatusOK, RevokeResult{Tokens: t, Sessions: ss})
	return nil
}

func (s *Server) setPassword(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	var req struct {
		Password string `json:"password"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	if l := len(req.Password); l < 8 || l > 72 {
		return badRequestf("a password needs 8 to 72 characters, got %d", l)
	}
	if err := s.access.SetPassword(r.Context(), n, req.Password); err != nil {
		return err
	}
	s.st.AddEvent(r.Context(), actor(r), "access.password", n, "set")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deletePassword(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	if err := s.access.SetPassword(r.Context(), n, ""); err != nil {
		return err
	}
	s.st.AddEvent(r.Context(), actor(r), "access.password", n, "removed")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
