package frontdoor

import (
	"html/template"
	"net/http"

	"github.com/thon-dev/thon/internal/orchestrator"
)

// pageData fills THON's own small pages.
type pageData struct {
	Title  string
	User   string // the IDE's participant
	Who    string // who is signed in (forbidden page)
	State  string // the sandbox's state (waiting page)
	Queue  int    // wakes ahead of this one (waiting page; -1: not waking)
	Msg    string
	Action string // form target
	Login  string // link to the password form
	CA     string // link to the CA page
}

const pageHead = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .State}}<meta http-equiv="refresh" content="3">{{end}}
<title>{{.Title}} · THON</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:12vh auto;padding:0 1rem;color:#1d2330}
h1{font-size:1.5rem;margin:0 0 .5rem}.muted{color:#5b6578}
input,button{font:inherit;padding:.5rem .75rem;border-radius:.4rem;border:1px solid #b8c0cc}
button{background:#2456d6;color:#fff;border-color:#2456d6;cursor:pointer}
.spin{display:inline-block;width:1rem;height:1rem;border:3px solid #c9d3e6;border-top-color:#2456d6;border-radius:50%;animation:s 1s linear infinite;vertical-align:middle;margin-right:.5rem}
@keyframes s{to{transform:rotate(360deg)}}
</style></head><body>`

var (
	landingPage = template.Must(template.New("landing").Parse(pageHead + `
<h1>THON</h1>
<p>Welcome! Open the personal link an organizer gave you to reach your IDE.</p>
<p class="muted">Your browser warns about the certificate? <a href="{{.CA}}">Trust this event's certificate authority</a>.</p>
</body></html>`))

	waitingPage = template.Must(template.New("waiting").Parse(pageHead + `
<h1><span class="spin" aria-hidden="true"></span>Your IDE is {{if eq .State "paused"}}paused{{else if eq .State "stopped"}}stopped{{else if eq .State "expired"}}out of time{{else if eq .State "asleep"}}asleep{{else if eq .State "failed"}}having trouble{{else if eq .State "missing"}}not created yet{{else if ge .Queue 0}}waking up{{else}}starting{{end}}</h1>
<p>{{if eq .State "paused"}}An organizer paused it; your work is safe.{{else if eq .State "expired"}}It was stopped at the end of its time; your work is safe. An organizer can give it more time.{{else if eq .State "asleep"}}It went to sleep while nobody used it; your work is safe. Reload this page to wake it.{{else if or (eq .State "stopped") (eq .State "missing") (eq .State "failed")}}An organizer needs to start it; your work is safe.{{else if gt .Queue 0}}It went to sleep while nobody used it; your work is safe. {{if eq .Queue 1}}One IDE wakes{{else}}{{.Queue}} IDEs wake{{end}} before yours: <strong id="queue">{{.Queue}}</strong> ahead of you.{{else if eq .Queue 0}}It went to sleep while nobody used it; your work is safe. It is waking now: a few seconds.{{else}}This takes a few seconds.{{end}}
This page reloads by itself and opens your IDE as soon as it is ready.</p>
<p class="muted">IDE of {{.User}}</p>
</body></html>`))

	loginPage = template.Must(template.New("login").Parse(pageHead + `
<h1>Sign in to the IDE of {{.User}}</h1>
<p>The easiest way in is your personal access link. If an organizer gave you a password, enter it here.</p>
{{if .Msg}}<p role="alert"><strong>{{.Msg}}</strong></p>{{end}}
<form method="post" action="{{.Action}}">
<label>Password <input type="password" name="password" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button>
</form>
</body></html>`))

	linkPage = template.Must(template.New("link").Parse(pageHead + `
<h1>{{.Title}}</h1>
<p>{{.Msg}}</p>
<p class="muted">Have a password? <a href="{{.Login}}">Sign in with it</a>.</p>
</body></html>`))

	messagePage = template.Must(template.New("message").Parse(pageHead + `
<h1>{{.Title}}</h1>
<p>{{.Msg}}</p>
<p class="muted">IDE of {{.User}}</p>
</body></html>`))

	forbiddenPage = template.Must(template.New("forbidden").Parse(pageHead + `
<h1>This is not your IDE</h1>
<p>This IDE belongs to {{.User}}; you are signed in as {{.Who}}. Use your own personal link.</p>
</body></html>`))
)

func writePage(w http.ResponseWriter, status int, t *template.Template, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	t.Execute(w, d)
}

// waiting answers while a sandbox is not running: a page that reloads itself
// for browsers, a plain 503 for everything else.
func (f *FrontDoor) waiting(w http.ResponseWriter, r *http.Request, user, state string, queue int) {
	w.Header().Set("Retry-After", "3")
	w.Header().Set("Cache-Control", "no-store")
	if !wantsHTML(r) || isUpgrade(r) {
		msg := "this IDE is " + state + "; try again shortly"
		if state == orchestrator.StateAsleep {
			msg = "this IDE is asleep: open it in the browser to wake it"
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	if state == "" {
		state = "starting"
	}
	title := map[string]string{"paused": "Paused", "stopped": "Stopped", "failed": "Not running", "missing": "Not created yet",
		orchestrator.StateAsleep: "Asleep", orchestrator.StateExpired: "Out of time"}[state]
	switch {
	case title != "":
	case queue >= 0:
		title = "Waking up"
	default:
		title = "Starting"
	}
	writePage(w, http.StatusServiceUnavailable, waitingPage, pageData{Title: title, User: user, State: state, Queue: queue})
}
