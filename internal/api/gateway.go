package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/store"
)

// GatewayKeys is the AI gateway's key ring as the API sees it.
type GatewayKeys interface {
	gateway.KeyStore  // for gateway replicas (thon gateway serve)
	gateway.UsageSink // their usage lands here
	ID(user, group string) string
	List(ctx context.Context) ([]store.GatewayKey, error)
	Rotate(ctx context.Context, id string) (string, error)
	Revoke(ctx context.Context, id string) error
	Usage(ctx context.Context, ids []string, since time.Time) ([]store.UsageRow, error)
}

var errNoGateway = errors.New("the AI gateway is off: set gateway.enabled: true in thon.yaml and restart the daemon")

// keyID reads {id} from the path: a key id ("user:alice", "group:alpha") or
// a user name, which stands for the key that user's sandbox uses.
func (s *Server) keyID(r *http.Request) (string, error) {
	v := r.PathValue("id")
	kind, owner, ok := strings.Cut(v, ":")
	if !ok {
		if err := config.ValidName("user", v); err != nil {
			return "", badRequest{err}
		}
		u, err := s.st.User(r.Context(), v)
		if err != nil {
			return "", err
		}
		return s.keys.ID(u.Name, u.Group), nil
	}
	if kind != "user" && kind != "group" {
		return "", badRequestf("key id %q: use user:NAME, group:NAME or a user name", v)
	}
	if err := config.ValidName(kind, owner); err != nil {
		return "", badRequest{err}
	}
	return v, nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	ks, err := s.keys.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, nonNil(ks))
	return nil
}

// RotatedKey is the answer of a rotation: the new key, shown this once.
type RotatedKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	id, err := s.keyID(r)
	if err != nil {
		return err
	}
	key, err := s.keys.Rotate(r.Context(), id)
	if err != nil {
		return err
	}
	s.keysChanged()
	s.st.AddEvent(r.Context(), actor(r), "gateway.key.rotate", id, "")
	writeJSON(w, http.StatusOK, RotatedKey{ID: id, Key: key})
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	id, err := s.keyID(r)
	if err != nil {
		return err
	}
	if err := s.keys.Revoke(r.Context(), id); err != nil {
		return err
	}
	s.keysChanged()
	s.st.AddEvent(r.Context(), actor(r), "gateway.key.revoke", id, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) keysChanged() {
	if s.onKeysChanged != nil {
		s.onKeysChanged()
	}
}

// usage answers per-minute usage rows, optionally of some users' or groups'
// keys and since a time (?since=1h or an RFC 3339 time).
func (s *Server) usage(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			since = t
		} else {
			return badRequestf("since=%q: use a duration such as 1h or a time such as 2026-05-01T09:00:00Z", v)
		}
	}
	if p := principalOf(r); p.Role == auth.RoleParticipant {
		// A participant sees their own usage, whatever they ask for.
		q["user"], q["group"] = []string{p.User}, nil
	}
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, name := range q["user"] {
		if err := config.ValidName("user", name); err != nil {
			return badRequest{err}
		}
		u, err := s.st.User(r.Context(), name)
		if err != nil {
			return err
		}
		add(s.keys.ID(u.Name, u.Group))
	}
	for _, name := range q["group"] {
		if err := config.ValidName("group", name); err != nil {
			return badRequest{err}
		}
		g, err := s.st.Group(r.Context(), name)
		if err != nil {
			return err
		}
		for _, u := range g.Users {
			add(s.keys.ID(u, g.Name))
		}
		add("group:" + g.Name) // per-group mode
	}
	if len(ids) == 0 && (len(q["user"]) > 0 || len(q["group"]) > 0) {
		writeJSON(w, http.StatusOK, []store.UsageRow{})
		return nil
	}
	rows, err := s.keys.Usage(r.Context(), ids, since)
	if err != nil {
		return fmt.Errorf("read usage: %w", err)
	}
	writeJSON(w, http.StatusOK, nonNil(rows))
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
	writeJSON(w, http.StatusOK, ReplicaKey{ID: k.ID, Owner: k.Owner, Group: k.Group, Scale: k.Scale, Revoked: k.Revoked, BudgetUsed: k.BudgetUsed})
	return nil
}

// ReplicaKey is what a gateway replica learns about a key.
type ReplicaKey struct {
	ID         string `json:"id"`
	Owner      string `json:"owner"`
	Group      string `json:"group"`
	Scale      int    `json:"scale"`
	Revoked    bool   `json:"revoked"`
	BudgetUsed int64  `json:"budget_used"`
}

// addUsage stores usage a gateway replica counted.
func (s *Server) addUsage(w http.ResponseWriter, r *http.Request) error {
	if s.keys == nil {
		return errNoGateway
	}
	var rows []store.UsageRow
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
