package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/store"
)

// TokenRequest creates an API token.
type TokenRequest struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresIn string   `json:"expires_in,omitempty"` // e.g. 720h; "" never
	User      string   `json:"user,omitempty"`       // a participant's token
}

// CreatedToken is a new token, shown this once, with its record.
type CreatedToken struct {
	Token  string      `json:"token"`
	Record store.Token `json:"record"`
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.tokens.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ts)
	return nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	var ttl time.Duration
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return badRequestf("expires_in=%q: a duration such as 24h or 720h, or leave it out for a token that does not expire", req.ExpiresIn)
		}
		ttl = d
	}
	tok, rec, err := s.tokens.Create(r.Context(), actor(r), auth.TokenRequest{Name: req.Name, Scopes: req.Scopes, ExpiresIn: ttl, User: req.User})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, CreatedToken{Token: tok, Record: rec})
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := s.tokens.Revoke(r.Context(), actor(r), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// InviteRequest creates an invite code for a group.
type InviteRequest struct {
	Group     string `json:"group"`
	Uses      int    `json:"uses"`       // 1 for single-use
	ExpiresIn string `json:"expires_in"` // e.g. 48h
}

// CreatedInvite is a new invite code, shown this once, and where it leads.
type CreatedInvite = access.CreatedInvite

func (s *Server) listInvites(w http.ResponseWriter, r *http.Request) error {
	list, err := s.access.Invites(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, nonNil(list))
	return nil
}

func (s *Server) createInvite(w http.ResponseWriter, r *http.Request) error {
	var req InviteRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	d, err := time.ParseDuration(req.ExpiresIn)
	if err != nil {
		return badRequestf("expires_in=%q: how long it works, a duration such as 48h (at most %s)", req.ExpiresIn, access.MaxInviteTTL)
	}
	in, err := s.access.CreateInvite(r.Context(), actor(r), req.Group, req.Uses, d)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, in)
	return nil
}

func (s *Server) revokeInvite(w http.ResponseWriter, r *http.Request) error {
	if err := s.access.RevokeInvite(r.Context(), actor(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ImportUsersRequest adds participants by group (nobody is deleted; someone
// listed in another group is moved).
type ImportUsersRequest struct {
	Groups []config.Group `json:"groups"`
}

func (s *Server) importUsers(w http.ResponseWriter, r *http.Request) error {
	var req ImportUsersRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Groups) == 0 {
		return badRequestf("groups is empty: send at least one {name, users}")
	}
	res, err := s.orch.ImportPeople(r.Context(), actor(r), config.Groups(req.Groups))
	if err != nil {
		var ve *config.ValidationError
		if !errors.As(err, &ve) {
			return badRequest{err}
		}
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
