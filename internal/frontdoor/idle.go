package frontdoor

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/auth"
)

// The idle banner: code-server has no hook for "you are about to be put
// to sleep", so the front door adds one small script of its own to the
// IDE's page. The script asks /_thon/idle (which is not activity) how
// long the sandbox has been idle, shows a banner five minutes before it
// sleeps or before its lifetime ends, and its "I'm still here" button
// posts to /_thon/idle (which is).
const (
	idlePath   = "/_thon/idle"    // GET: the sandbox's idle time; POST: keep it awake
	idleJSPath = "/_thon/idle.js" // the banner's script
)

//go:embed assets/idle.js
var idleJS []byte

// idleScriptMax is the largest IDE page the script is added to; larger
// ones pass through unchanged.
const idleScriptMax = 1 << 20

// idleStatus is /_thon/idle's answer.
type idleStatus struct {
	State          string `json:"state"`
	IdleSeconds    int64  `json:"idle_seconds"`
	TimeoutSeconds int64  `json:"timeout_seconds"`            // 0: it does not sleep when idle
	SleepInSeconds *int64 `json:"sleep_in_seconds,omitempty"` // with a timeout
	Action         string `json:"action,omitempty"`           // stop | pause
	EndsInSeconds  *int64 `json:"ends_in_seconds,omitempty"`  // with sandbox.max_lifetime
	Ends           string `json:"ends,omitempty"`             // RFC 3339
}

// serveIdle answers the banner's script. who is the signed-in participant
// (or organizer); only the participant's own POST counts as activity.
func (f *FrontDoor) serveIdle(w http.ResponseWriter, r *http.Request, user, who string) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		if !auth.SameOrigin(r) {
			http.Error(w, "refused: posted from another site", http.StatusForbidden)
			return
		}
		if act := f.o.Activity; act != nil && who == user {
			act.Touch(user)
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use GET (idle time) or POST (keep the sandbox awake)", http.StatusMethodNotAllowed)
		return
	}
	in, err := f.o.Orch.IdleOf(r.Context(), user)
	if err != nil {
		f.log.Error("idle status", "user", user, "err", err)
		http.Error(w, "THON cannot look up this IDE right now; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	secs := func(d time.Duration) int64 { return int64(math.Ceil(d.Seconds())) }
	st := idleStatus{State: in.State, IdleSeconds: int64(in.IdleFor.Seconds()), TimeoutSeconds: secs(in.Timeout)}
	if in.Timeout > 0 {
		n := secs(in.SleepIn)
		st.SleepInSeconds, st.Action = &n, in.Action
	}
	if !in.Expires.IsZero() {
		n := secs(in.EndsIn)
		st.EndsInSeconds, st.Ends = &n, in.Expires.UTC().Format(time.RFC3339)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

func serveIdleJS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "idle.js", time.Time{}, bytes.NewReader(idleJS))
}

// addIdleScript adds the banner's script to an IDE page (a 200 text/html
// answer without content encoding: the request asked for none), before
// </head>. Pages it cannot change pass through as they are.
func addIdleScript(res *http.Response, prefix string) error {
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Encoding") != "" ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		return nil
	}
	head, err := io.ReadAll(io.LimitReader(res.Body, idleScriptMax+1))
	if err != nil {
		return err
	}
	i := bytes.Index(head, []byte("</head>"))
	if len(head) > idleScriptMax || i < 0 {
		res.Body = readCloser{io.MultiReader(bytes.NewReader(head), res.Body), res.Body}
		return nil
	}
	tag := `<script src="` + prefix + idleJSPath + `" defer></script>`
	page := make([]byte, 0, len(head)+len(tag))
	page = append(append(append(page, head[:i]...), tag...), head[i:]...)
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(page))
	res.ContentLength = int64(len(page))
	res.Header.Set("Content-Length", strconv.Itoa(len(page)))
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
