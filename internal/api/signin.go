package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/store"
	"github.com/thon-dev/thon/wire"
)

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.tokens.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(ts, toToken))
	return nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req wire.TokenRequest
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
	writeJSON(w, http.StatusCreated, wire.CreatedToken{Token: tok, Record: toToken(auth.TokenInfo{Token: rec, State: store.TokenActive})})
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := s.tokens.Revoke(r.Context(), actor(r), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listInvites(w http.ResponseWriter, r *http.Request) error {
	list, err := s.access.Invites(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(list, toInvite))
	return nil
}

func (s *Server) createInvite(w http.ResponseWriter, r *http.Request) error {
	var req wire.InviteRequest
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
	writeJSON(w, http.StatusCreated, toCreatedInvite(in))
	return nil
}

func (s *Server) revokeInvite(w http.ResponseWriter, r *http.Request) error {
	if err := s.access.RevokeInvite(r.Context(), actor(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) importUsers(w http.ResponseWriter, r *http.Request) error {
	var req wire.ImportUsersRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Groups) == 0 {
		return badRequestf("groups is empty: send at least one {name, users}")
	}
	groups := make(config.Groups, len(req.Groups))
	for i, g := range req.Groups {
		groups[i] = config.Group{Name: g.Name, Users: g.Users}
	}
	res, err := s.orch.ImportPeople(r.Context(), actor(r), groups)
	if err != nil {
		var ve *config.ValidationError
		if !errors.As(err, &ve) {
			return badRequest{err}
		}
		return err
	}
	writeJSON(w, http.StatusOK, toImportResult(res))
	return nil
}
