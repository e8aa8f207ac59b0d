// Package client is the Go client of THON's REST API. The thon CLI and the
// end-to-end tests use it, so the API is exercised the way users exercise it.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/wire"
)

// The API's types (package wire), named here for callers of this package.
type (
	Info            = wire.Info
	InfoDetail      = wire.InfoDetail
	TLSStatus       = wire.TLSStatus
	TLSName         = wire.TLSName
	Problem         = wire.Problem
	SandboxList     = wire.SandboxList
	BulkRequest     = wire.BulkRequest
	Status          = wire.Status
	Result          = wire.Result
	Summary         = wire.Summary
	Progress        = wire.Progress
	ReconcileReport = wire.ReconcileReport
	Group           = wire.Group
	Template        = wire.Template
	GroupMembers    = wire.GroupMembers
	User            = wire.User
	Event           = wire.Event
	ImportResult    = wire.ImportResult
	Instance        = wire.Instance
	Renewed         = wire.Renewed
	Link            = wire.Link
	RevokeResult    = wire.RevokeResult
	GatewayKey      = wire.GatewayKey
	RotatedKey      = wire.RotatedKey
	ReplicaKey      = wire.ReplicaKey
	UsageRow        = wire.UsageRow
	Usage           = wire.Usage
	KeyUsage        = wire.KeyUsage
	UsageSummary    = wire.UsageSummary
	Resources       = wire.Resources
)

// Error is an error answered by the API.
type Error struct {
	StatusCode int
	Message    string    `json:"error"`
	Hint       string    `json:"hint,omitempty"`
	Problems   []Problem `json:"problems,omitempty"`
	body       []byte
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Hint != "" {
		b.WriteString(": " + e.Hint)
	}
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// IsNotFound reports whether err is the API's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// Client talks to one THON daemon.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the daemon at baseURL ("http://127.0.0.1:8100").
func New(baseURL, token string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{}}
}

// URL is the daemon's base URL.
func (c *Client) URL() string { return c.base }

func (c *Client) request(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("THON daemon at %s does not answer: %w", c.base, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		e := &Error{StatusCode: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e.body = b
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
		}
		return nil, e
	}
	return resp, nil
}

// do sends a request and decodes the JSON answer into out (if not nil).
// A 502 carrying a result (a failed sandbox action) decodes too.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	req, err := c.request(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Health checks that the daemon answers (no token needed).
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/api/v1/health", nil, nil, nil)
}

// WaitHealthy polls Health until it answers or ctx ends.
func (c *Client) WaitHealthy(ctx context.Context) error {
	for {
		err := c.Health(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Info describes the daemon, its engine and its sandbox settings.
func (c *Client) Info(ctx context.Context) (InfoDetail, error) {
	var out InfoDetail
	return out, c.do(ctx, http.MethodGet, "/api/v1/info", nil, nil, &out)
}

// Shutdown asks the daemon to stop; sandboxes keep running.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/v1/shutdown", nil, nil, nil)
}

// Import applies a thon.yaml: sandbox settings, groups and users (upsert).
// cfg is the configuration as JSON (the Config schema of the OpenAPI
// document): a value that marshals to it, such as the thon command's parsed
// thon.yaml, or a json.RawMessage.
func (c *Client) Import(ctx context.Context, cfg any) (ImportResult, error) {
	var out ImportResult
	return out, c.do(ctx, http.MethodPost, "/api/v1/import", nil, cfg, &out)
}

// Groups lists groups with their users.
func (c *Client) Groups(ctx context.Context) ([]Group, error) {
	var out []Group
	return out, c.do(ctx, http.MethodGet, "/api/v1/groups", nil, nil, &out)
}

// Templates lists the sandbox templates, with the groups that use them.
func (c *Client) Templates(ctx context.Context) ([]Template, error) {
	var out []Template
	return out, c.do(ctx, http.MethodGet, "/api/v1/templates", nil, nil, &out)
}

// CreateGroup adds an empty group.
func (c *Client) CreateGroup(ctx context.Context, name string) (Group, error) {
	var out Group
	return out, c.do(ctx, http.MethodPost, "/api/v1/groups", nil, wire.GroupRequest{Name: name}, &out)
}

// DeleteGroup removes an empty group.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/groups/"+url.PathEscape(name), nil, nil, nil)
}

// Users lists participants, optionally of some groups only.
func (c *Client) Users(ctx context.Context, groups ...string) ([]User, error) {
	var out []User
	return out, c.do(ctx, http.MethodGet, "/api/v1/users", url.Values{"group": groups}, nil, &out)
}

// CreateUser adds a participant to a group.
func (c *Client) CreateUser(ctx context.Context, name, group string) (User, error) {
	var out User
	return out, c.do(ctx, http.MethodPost, "/api/v1/users", nil, wire.UserRequest{Name: name, Group: group}, &out)
}

// MoveUser puts a participant in another group; the sandbox and workspace follow.
func (c *Client) MoveUser(ctx context.Context, name, group string) (Result, error) {
	var out Result
	return out, c.do(ctx, http.MethodPatch, "/api/v1/users/"+url.PathEscape(name), nil, wire.MoveRequest{Group: group}, &out)
}

// DeleteUser removes a participant and their sandbox; purge deletes the workspace too.
func (c *Client) DeleteUser(ctx context.Context, name string, purge bool) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(name), url.Values{"purge": {strconv.FormatBool(purge)}}, nil, nil)
}

// Sandboxes lists the status of participants' sandboxes (filtered by group or user).
func (c *Client) Sandboxes(ctx context.Context, groups, users []string) (SandboxList, error) {
	var out SandboxList
	return out, c.do(ctx, http.MethodGet, "/api/v1/sandboxes", url.Values{"group": groups, "user": users}, nil, &out)
}

// Sandbox returns one participant's sandbox status.
func (c *Client) Sandbox(ctx context.Context, user string) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodGet, "/api/v1/sandboxes/"+url.PathEscape(user), nil, nil, &out)
}

// Action runs start, stop, pause, resume or recreate on one sandbox. A
// failed action returns its Result and an error.
func (c *Client) Action(ctx context.Context, user, action string) (Result, error) {
	var out Result
	err := c.do(ctx, http.MethodPost, "/api/v1/sandboxes/"+url.PathEscape(user)+"/"+url.PathEscape(action), nil, nil, &out)
	return out, resultErr(&out, err)
}

// Renew gives a sandbox more time: for from now ("" the configured
// sandbox.max_lifetime); an expired sandbox starts again.
func (c *Client) Renew(ctx context.Context, user, d string) (Renewed, error) {
	var out Renewed
	return out, c.do(ctx, http.MethodPost, "/api/v1/sandboxes/"+url.PathEscape(user)+"/renew", nil, wire.RenewRequest{For: d}, &out)
}

// RemoveSandbox deletes one sandbox; purge deletes its workspace too.
func (c *Client) RemoveSandbox(ctx context.Context, user string, purge bool) (Result, error) {
	var out Result
	err := c.do(ctx, http.MethodDelete, "/api/v1/sandboxes/"+url.PathEscape(user), url.Values{"purge": {strconv.FormatBool(purge)}}, nil, &out)
	return out, resultErr(&out, err)
}

// resultErr turns the API's 502 (the engine refused the action) back into
// the Result it carries, with an error that says why.
func resultErr(r *Result, err error) error {
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusBadGateway && json.Unmarshal(e.body, r) == nil && r.Outcome != "" {
		return errors.New(r.Error)
	}
	return err
}

// Logs streams a sandbox's output.
func (c *Client) Logs(ctx context.Context, user string, tail int, follow bool) (io.ReadCloser, error) {
	q := url.Values{"tail": {strconv.Itoa(tail)}, "follow": {strconv.FormatBool(follow)}}
	req, err := c.request(ctx, http.MethodGet, "/api/v1/sandboxes/"+url.PathEscape(user)+"/logs", q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Bulk runs an action on many sandboxes, calling progress (if set) as each
// advances. Engine-wide problems come back as an error before anything changed.
func (c *Client) Bulk(ctx context.Context, r BulkRequest, progress func(Progress)) (Summary, error) {
	req, err := c.request(ctx, http.MethodPost, "/api/v1/sandboxes/bulk", nil, r)
	if err != nil {
		return Summary{}, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(req)
	if err != nil {
		return Summary{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l wire.BulkLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return Summary{}, fmt.Errorf("bulk %s: bad line from daemon: %w", r.Action, err)
		}
		switch {
		case l.Progress != nil && progress != nil:
			progress(*l.Progress)
		case l.Summary != nil:
			return *l.Summary, nil
		}
	}
	if err := sc.Err(); err != nil {
		return Summary{}, fmt.Errorf("bulk %s: %w", r.Action, err)
	}
	return Summary{}, fmt.Errorf("bulk %s: the daemon closed the stream without a summary (see its log)", r.Action)
}

// Orphans lists managed sandboxes whose user is not in the store.
func (c *Client) Orphans(ctx context.Context) ([]Instance, error) {
	var out []Instance
	return out, c.do(ctx, http.MethodGet, "/api/v1/orphans", nil, nil, &out)
}

// RemoveOrphans deletes them; purge deletes their workspaces too.
func (c *Client) RemoveOrphans(ctx context.Context, purge bool) ([]Result, error) {
	var out []Result
	return out, c.do(ctx, http.MethodDelete, "/api/v1/orphans", url.Values{"purge": {strconv.FormatBool(purge)}}, nil, &out)
}

// Events returns audit-log entries after an ID (0: the newest limit).
func (c *Client) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	var out []Event
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "limit": {strconv.Itoa(limit)}}
	return out, c.do(ctx, http.MethodGet, "/api/v1/events", q, nil, &out)
}

// IssueLink creates a personal access link for a participant: opening it
// signs their browser in to their IDE. The token inside is shown only here.
func (c *Client) IssueLink(ctx context.Context, user string) (Link, error) {
	var out Link
	return out, c.do(ctx, http.MethodPost, "/api/v1/users/"+url.PathEscape(user)+"/access", nil, nil, &out)
}

// IssueLinks creates links for every selected participant (all when empty).
func (c *Client) IssueLinks(ctx context.Context, groups, users []string) ([]Link, error) {
	var out []Link
	return out, c.do(ctx, http.MethodPost, "/api/v1/access", nil, wire.LinksRequest{Groups: groups, Users: users}, &out)
}

// RevokeAccess ends every link and browser session of a participant.
func (c *Client) RevokeAccess(ctx context.Context, user string) (RevokeResult, error) {
	var out RevokeResult
	return out, c.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(user)+"/access", nil, nil, &out)
}

// SetPassword sets a participant's sign-in password ("" removes it).
func (c *Client) SetPassword(ctx context.Context, user, password string) error {
	path := "/api/v1/users/" + url.PathEscape(user) + "/password"
	if password == "" {
		return c.do(ctx, http.MethodDelete, path, nil, nil, nil)
	}
	return c.do(ctx, http.MethodPut, path, nil, wire.PasswordRequest{Password: password}, nil)
}

// GatewayKeys lists the AI gateway's key records (never the keys).
func (c *Client) GatewayKeys(ctx context.Context) ([]GatewayKey, error) {
	var out []GatewayKey
	return out, c.do(ctx, http.MethodGet, "/api/v1/gateway/keys", nil, nil, &out)
}

// RotateGatewayKey replaces a key (id "user:alice", "group:alpha", or a user
// name) and returns the new one, shown this once.
func (c *Client) RotateGatewayKey(ctx context.Context, id string) (RotatedKey, error) {
	var out RotatedKey
	return out, c.do(ctx, http.MethodPost, "/api/v1/gateway/keys/"+url.PathEscape(id)+"/rotate", nil, nil, &out)
}

// RevokeGatewayKey makes a key stop working until it is rotated.
func (c *Client) RevokeGatewayKey(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/gateway/keys/"+url.PathEscape(id), nil, nil, nil)
}

// GatewayUsage returns per-minute usage rows of some users' or groups' keys
// (all when both are empty) since a duration ago ("" for all time).
func (c *Client) GatewayUsage(ctx context.Context, users, groups []string, since string) ([]UsageRow, error) {
	var out []UsageRow
	q := url.Values{"user": users, "group": groups}
	if since != "" {
		q.Set("since", since)
	}
	return out, c.do(ctx, http.MethodGet, "/api/v1/gateway/usage", q, nil, &out)
}

// GatewayUsageSummary is the gateway's usage summed (in all, per key, per
// key and model, per group), of some users' or groups' keys (all when both
// are empty) since a duration ago ("" for all time); minutes > 0 adds
// tokens per minute of the last minutes.
func (c *Client) GatewayUsageSummary(ctx context.Context, users, groups []string, since string, minutes int) (UsageSummary, error) {
	var out UsageSummary
	q := url.Values{"user": users, "group": groups}
	if since != "" {
		q.Set("since", since)
	}
	if minutes > 0 {
		q.Set("minutes", strconv.Itoa(minutes))
	}
	return out, c.do(ctx, http.MethodGet, "/api/v1/gateway/usage/summary", q, nil, &out)
}

// GatewayLookup looks a gateway key up by its SHA-256 hash (hex), as a
// gateway replica (thon gateway serve) does; a key THON does not know is a
// 404 (IsNotFound).
func (c *Client) GatewayLookup(ctx context.Context, hash string) (ReplicaKey, error) {
	var out ReplicaKey
	return out, c.do(ctx, http.MethodGet, "/api/v1/gateway/lookup", url.Values{"hash": {hash}}, nil, &out)
}

// AddGatewayUsage adds usage a gateway replica counted to the daemon's.
func (c *Client) AddGatewayUsage(ctx context.Context, rows []UsageRow) error {
	return c.do(ctx, http.MethodPost, "/api/v1/gateway/usage", nil, rows, nil)
}

// Exported is what a downloaded export holds, from the daemon's trailers,
// checked against what arrived.
type Exported struct {
	User, Group string
	// Bytes is the .tar.gz's size, SHA256 its digest (hex) as received and
	// as the daemon computed it.
	Bytes        int64
	SHA256       string
	Files        int
	ContentBytes int64
}

// Export downloads user's workspace as .tar.gz into w. It fails when the
// download is cut or does not match the daemon's digest (w then holds an
// incomplete archive); a participant without a sandbox is IsNotFound.
func (c *Client) Export(ctx context.Context, user string, w io.Writer) (Exported, error) {
	req, err := c.request(ctx, http.MethodGet, "/api/v1/sandboxes/"+url.PathEscape(user)+"/export", nil, nil)
	if err != nil {
		return Exported{}, err
	}
	resp, err := c.send(req)
	if err != nil {
		return Exported{}, err
	}
	defer resp.Body.Close()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, sum), resp.Body)
	if err != nil {
		return Exported{}, fmt.Errorf("download the export of %s: %w", user, err)
	}
	x := Exported{User: user, Group: resp.Header.Get("Thon-Group"), Bytes: n, SHA256: hex.EncodeToString(sum.Sum(nil))}
	if msg := resp.Trailer.Get("Thon-Error"); msg != "" {
		return x, fmt.Errorf("the export of %s was cut: %s", user, msg)
	}
	if want := resp.Trailer.Get("Thon-Sha256"); want != x.SHA256 {
		return x, fmt.Errorf("the export of %s arrived damaged or cut: sha256 %s, the daemon sent %q", user, x.SHA256, want)
	}
	x.Files, _ = strconv.Atoi(resp.Trailer.Get("Thon-Files"))
	x.ContentBytes, _ = strconv.ParseInt(resp.Trailer.Get("Thon-Content-Bytes"), 10, 64)
	return x, nil
}
