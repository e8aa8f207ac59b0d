package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/gateway/keyring"
	"github.com/thon-dev/thon/internal/store"
	"github.com/thon-dev/thon/wire"
)

// GatewayKeys is the AI gateway's key ring as the API sees it.
type GatewayKeys interface {
	gateway.KeyStore  // for gateway replicas (thon gateway serve)
	gateway.UsageSink // their usage lands here
	Resolve(ctx context.Context, name string) (string, error)
	KeysOf(ctx context.Context, users, groups []string) ([]string, error)
	List(ctx context.Context) ([]store.GatewayKey, error)
	Rotate(ctx context.Context, actor, id string) (string, error)
	Revoke(ctx context.Context, actor, id string) error
	Usage(ctx context.Context, ids []string, since time.Time) ([]store.UsageRow, error)
	Summary(ctx context.Context, q keyring.UsageQuery) (keyring.UsageSummary, error)
}

var errNoGateway = errors.New("the AI gateway is off: set gateway.enabled: true in thon.yaml and restart the daemon")

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	ks, err := s.keys.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, each(ks, toGatewayKey))
	return nil
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	id, err := s.keys.Resolve(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	key, err := s.keys.Rotate(r.Context(), actor(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.RotatedKey{ID: id, Key: key})
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	id, err := s.keys.Resolve(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.keys.Revoke(r.Context(), actor(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// usageQuery reads ?user=&group=&since= (a duration such as 1h, or an
// RFC 3339 time); a participant gets their own usage, whatever they ask.
func usageQuery(r *http.Request) (users, groups []string, since time.Time, err error) {
	q := r.URL.Query()
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			since = t
		} else {
			return nil, nil, since, badRequestf("since=%q: use a duration such as 1h or a time such as 2026-05-01T09:00:00Z", v)
		}
	}
	if p := principalOf(r); p.Role == auth.RoleParticipant {
		return []string{p.User}, nil, since, nil
	}
	for _, n := range q["user"] {
		if err := config.ValidName("user", n); err != nil {
			return nil, nil, since, err
		}
	}
	for _, n := range q["group"] {
		if err := config.ValidName("group", n); err != nil {
			return nil, nil, since, err
		}
	}
	return q["user"], q["group"], since, nil
}

// usage answers per-minute usage rows, optionally of some users' or groups'
// keys and since a time.
func (s *Server) usage(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	users, groups, since, err := usageQuery(r)
	if err != nil {
		return err
	}
	var ids []string
	if len(users) > 0 || len(groups) > 0 {
		if ids, err = s.keys.KeysOf(r.Context(), users, groups); err != nil {
			return err
		}
		if len(ids) == 0 {
			writeJSON(w, http.StatusOK, []wire.UsageRow{})
			return nil
		}
	}
	rows, err := s.keys.Usage(r.Context(), ids, since)
	if err != nil {
		return fmt.Errorf("read usage: %w", err)
	}
	writeJSON(w, http.StatusOK, each(rows, toUsageRow))
	return nil
}

// usageSummary is the gateway's usage summed as the CLI and the dashboard
// show it: in all, per key, per key and model, per group, and with
// ?minutes=N per minute of the last N minutes.
func (s *Server) usageSummary(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	users, groups, since, err := usageQuery(r)
	if err != nil {
		return err
	}
	minutes := 0
	if v := r.URL.Query().Get("minutes"); v != "" {
		if minutes, err = strconv.Atoi(v); err != nil || minutes < 1 || minutes > 24*60 {
			return badRequestf("minutes=%q: a window of 1 to 1440 minutes", v)
		}
	}
	sum, err := s.keys.Summary(r.Context(), keyring.UsageQuery{Users: users, Groups: groups, Since: since, Minutes: minutes})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUsageSummary(sum))
	return nil
}

// lookupKey answers a gateway replica's question: whose key has this hash?
func (s *Server) lookupKey(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	h := r.URL.Query().Get("hash")
	if len(h) != 64 {
		return badRequestf("hash=%q: send the SHA-256 of the key, in hex", h)
	}
	k, err := s.keys.KeyByHash(r.Context(), h)
	if errors.Is(err, gateway.ErrUnknownKey) {
		writeError(w, http.StatusNotFound, "unknown gateway key", "")
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, wire.ReplicaKey{ID: k.ID, Owner: k.Owner, Group: k.Group, Scale: k.Scale, Revoked: k.Revoked, BudgetUsed: k.BudgetUsed})
	return nil
}

// addUsage stores usage a gateway replica counted.
func (s *Server) addUsage(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	var rows []wire.UsageRow
	if err := decode(r, &rows); err != nil {
		return err
	}
	for _, u := range rows {
		err := s.keys.Add(r.Context(), gateway.Usage{KeyID: u.KeyID, Model: u.Model, Minute: u.Minute, Requests: u.Requests,
			PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, Rejections: u.Rejections})
		if err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
