package api

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

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
	ts, err := s.st.Tokens(r.Context())
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
	if err := config.ValidName("token", req.Name); err != nil {
		return badRequest{err}
	}
	scopes, err := auth.ParseScopes(strings.Join(req.Scopes, ","))
	if err != nil {
		return badRequest{err}
	}
	t := store.Token{Name: req.Name, Role: auth.RoleAdmin, Scopes: scopes}
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return badRequestf("expires_in=%q: a duration such as 24h or 720h, or leave it out for a token that does not expire", req.ExpiresIn)
		}
		t.Expires = time.Now().Add(d).UTC()
	}
	if req.User != "" {
		if _, err := s.st.User(r.Context(), req.User); err != nil {
			return err
		}
		t.Role, t.User = auth.RoleParticipant, req.User
	}
	tok, hash := auth.NewToken()
	t.Hash = hash
	if err := s.st.CreateToken(r.Context(), t); err != nil {
		return err
	}
	s.st.AddEvent(r.Context(), actor(r), "token.create", t.Name, "scopes="+strings.Join(scopes, ",")+" role="+t.Role)
	rec, err := s.st.TokenRecord(r.Context(), hash)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, CreatedToken{Token: tok, Record: rec})
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	n := r.PathValue("name")
	if err := config.ValidName("token", n); err != nil {
		return badRequest{err}
	}
	if err := s.st.RevokeToken(r.Context(), n); err != nil {
		return err
	}
	s.st.AddEvent(r.Context(), actor(r), "token.revoke", n, "")
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
type CreatedInvite struct {
	Code   string       `json:"code"`
	URL    string       `json:"url"` // https://{dashboard}/join/{code}
	Record store.Invite `json:"record"`
}

func (s *Server) listInvites(w http.ResponseWriter, r *http.Request) error {
	list, err := s.st.Invites(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// maxInviteUses bounds one code: an event is at most a few thousand people.
const maxInviteUses = 10000

func (s *Server) createInvite(w http.ResponseWriter, r *http.Request) error {
	var req InviteRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := config.ValidName("group", req.Group); err != nil {
		return badRequest{err}
	}
	if req.Uses < 1 || req.Uses > maxInviteUses {
		return badRequestf("uses=%d: how many people may join with it, 1..%d", req.Uses, maxInviteUses)
	}
	d, err := time.ParseDuration(req.ExpiresIn)
	if err != nil || d <= 0 || d > 90*24*time.Hour {
		return badRequestf("expires_in=%q: how long it works, a duration such as 48h (at most 2160h)", req.ExpiresIn)
	}
	if _, err := s.st.Group(r.Context(), req.Group); err != nil {
		return err
	}
	code := InviteCode()
	in := store.Invite{Hash: auth.HashToken(code), ID: code[:6], Group: req.Group, MaxUses: req.Uses, Expires: time.Now().Add(d).UTC(), CreatedBy: actor(r)}
	if err := s.st.CreateInvite(r.Context(), in); err != nil {
		return err
	}
	s.st.AddEvent(r.Context(), actor(r), "invite.create", in.ID, fmt.Sprintf("group=%s uses=%d expires=%s", in.Group, in.MaxUses, in.Expires.Format(time.RFC3339)))
	rec, err := s.st.InviteByHash(r.Context(), in.Hash)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, CreatedInvite{Code: code, URL: s.joinURL(code), Record: rec})
	return nil
}

// joinURL is where an invite code is used: the dashboard's /join/{code}.
func (s *Server) joinURL(code string) string {
	if d, ok := s.access.(interface{ DashboardURL() string }); ok {
		return d.DashboardURL() + "join/" + code
	}
	return "/join/" + code
}

func (s *Server) revokeInvite(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if len(id) != 6 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return badRequestf("invite id %q: the first 6 characters of the code, as thon invite list shows", id)
	}
	if err := s.st.RevokeInvite(r.Context(), id); err != nil {
		return err
	}
	s.st.AddEvent(r.Context(), actor(r), "invite.revoke", id, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// InviteCode is a fresh invite code: 20 characters of base32 (100 bits),
// easy to read off a wall and to type.
func InviteCode() string {
	b := make([]byte, 13)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))[:20]
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
