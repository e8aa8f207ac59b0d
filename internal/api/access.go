package api

import (
	"net/http"

	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/wire"
)

// issueLink creates a personal access link for one participant.
func (s *Server) issueLink(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	l, err := s.access.IssueLink(r.Context(), actor(r), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, toLink(l))
	return nil
}

// issueLinks creates links for many participants: a group's access cards.
func (s *Server) issueLinks(w http.ResponseWriter, r *http.Request) error {
	var req wire.LinksRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	f := orchestrator.Filter{Groups: req.Groups, Users: req.Users}
	if err := validFilter(f); err != nil {
		return err
	}
	out, err := s.access.IssueLinks(r.Context(), actor(r), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, each(out, toLink))
	return nil
}

func (s *Server) revokeAccess(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	t, ss, err := s.access.Revoke(r.Context(), actor(r), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.RevokeResult{Tokens: t, Sessions: ss})
	return nil
}

func (s *Server) setPassword(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	var req wire.PasswordRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Password == "" {
		return badRequestf("password is empty: send one, or DELETE the password to remove it")
	}
	if err := s.access.SetPassword(r.Context(), actor(r), n, req.Password); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deletePassword(w http.ResponseWriter, r *http.Request) error {
	n, err := name(r, "user")
	if err != nil {
		return err
	}
	if err := s.access.SetPassword(r.Context(), actor(r), n, ""); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
