package dashboard

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/access"
	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/configfiles"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/internal/gateway/keyring"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// pageData is what every page template gets.
type pageData struct {
	Title string
	Nav   string // the page's path, for the menu
	CSRF  string
	Next  string // login: where to go after
	Error string
	Flash string
	Data  any
}

// pageFunc gathers a page's data.
type pageFunc func(r *http.Request) (name, title string, data any, err error)

func (d *Dashboard) page(h pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, title, data, err := h(r)
		pd := pageData{Title: title, Nav: r.URL.Path, CSRF: sessionOf(r).CSRF, Data: data, Flash: r.URL.Query().Get("flash")}
		status := http.StatusOK
		if err != nil {
			d.o.Logger.Error("dashboard page", "path", r.URL.Path, "err", err)
			pd.Error, status = err.Error(), http.StatusInternalServerError
		}
		d.render(w, r, status, name, pd)
	}
}

func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, pd pageData) {
	t := d.pages[name]
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", pd); err != nil {
		d.o.Logger.Error("render dashboard page", "page", name, "err", err)
		http.Error(w, "the page could not be drawn; see the daemon's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// States in the order the dashboard shows them.
var states = []string{"running", "starting", "paused", "asleep", "stopped", "expired", "failed", "created", "missing"}

// overviewData is the front page.
type overviewData struct {
	Participants, Groups, Outdated int
	ByState                        []stateCount
	LLM                            *llm.Status
	Usage                          keyring.UsageSummary
	Events                         []store.Event
}

type stateCount struct {
	State string
	N     int
}

func (d *Dashboard) overview(r *http.Request) (string, string, any, error) {
	ctx := r.Context()
	list, err := d.o.Orch.List(ctx, orchestrator.Filter{})
	if err != nil {
		return "overview", "Overview", nil, err
	}
	groups, err := d.o.Store.Groups(ctx)
	if err != nil {
		return "overview", "Overview", nil, err
	}
	od := overviewData{Participants: len(list), Groups: len(groups)}
	counts := map[string]int{}
	for _, s := range list {
		counts[s.State]++
		if s.Outdated {
			od.Outdated++
		}
	}
	for _, st := range states {
		od.ByState = append(od.ByState, stateCount{st, counts[st]})
	}
	if d.o.LLM != nil {
		st := d.llmStatus(ctx)
		od.LLM = &st
	}
	od.Usage, _ = d.usage(ctx, 60)
	od.Events, _ = d.o.Store.Events(ctx, 0, 15)
	slices.Reverse(od.Events)
	return "overview", "Overview", od, nil
}

// llmStatus asks the LLM server at most every 5 s, however many pages do.
func (d *Dashboard) llmStatus(ctx context.Context) llm.Status {
	llmCache.Lock()
	defer llmCache.Unlock()
	if time.Since(llmCache.at) > 5*time.Second {
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		llmCache.st = d.o.LLM.Status(c)
		cancel()
		llmCache.at = time.Now()
	}
	return llmCache.st
}

var llmCache struct {
	sync.Mutex
	at time.Time
	st llm.Status
}

// instancesData is the participants' table: one page of it.
type instancesData struct {
	Rows                  []row
	Groups                []string
	Group, State, Query   string
	Page, Pages, Size     int
	Total, Shown, Matched int
	States                []string
	Sort                  string // "" by group and name; "idle": longest idle first
	Lifetime              bool   // sandbox.max_lifetime is on: sandboxes can be renewed
	Usage                 usageTotal
}

// usageTotal is what the running sandboxes use, summed, beside the
// machine's total (the last sample).
type usageTotal struct {
	Sampled            bool
	Sandboxes          int
	CPU, MachineCPUs   float64
	Memory, MachineMem int64
	Disk               int64
	Note, Error        string
}

func totalUsage(u orchestrator.UsageSample) usageTotal {
	t := usageTotal{Sampled: !u.At.IsZero(), MachineCPUs: u.Machine.CPUs, MachineMem: u.Machine.Memory, Note: u.Note, Error: u.Error}
	for _, r := range u.Sandboxes {
		t.Sandboxes++
		t.CPU += max(r.CPU, 0)
		t.Memory += max(r.Memory, 0)
		t.Disk += max(r.Disk, 0)
	}
	return t
}

type row struct {
	orchestrator.Status
	URL string
}

func (d *Dashboard) instances(r *http.Request) (string, string, any, error) {
	ctx := r.Context()
	q := r.URL.Query()
	data := instancesData{Group: q.Get("group"), State: q.Get("state"), Query: strings.TrimSpace(q.Get("q")), States: states,
		Lifetime: d.o.Orch.Sandboxes().AnyLifetime()}
	if q.Get("sort") == "idle" {
		data.Sort = "idle"
	}
	data.Size = clamp(atoi(q.Get("size"), 50), 10, 500)
	data.Usage = totalUsage(d.o.Orch.Usage())
	list, err := d.o.Orch.List(ctx, orchestrator.Filter{})
	if err != nil {
		return "instances", "Instances", data, err
	}
	data.Total = len(list)
	seen := map[string]bool{}
	var matched []orchestrator.Status
	for _, s := range list {
		if !seen[s.Group] {
			seen[s.Group] = true
			data.Groups = append(data.Groups, s.Group)
		}
		if (data.Group == "" || s.Group == data.Group) && (data.State == "" || s.State == data.State) &&
			(data.Query == "" || strings.Contains(s.User, strings.ToLower(data.Query))) {
			matched = append(matched, s)
		}
	}
	if data.Sort == "idle" {
		// Longest idle first; never active last (nothing known yet).
		slices.SortStableFunc(matched, func(a, b orchestrator.Status) int {
			switch {
			case a.LastActive.IsZero() != b.LastActive.IsZero():
				return cmp.Compare(boolInt(a.LastActive.IsZero()), boolInt(b.LastActive.IsZero()))
			}
			return a.LastActive.Compare(b.LastActive)
		})
	}
	data.Matched = len(matched)
	data.Pages = max(1, (len(matched)+data.Size-1)/data.Size)
	data.Page = clamp(atoi(q.Get("page"), 1), 1, data.Pages)
	from := (data.Page - 1) * data.Size
	for _, s := range matched[min(from, len(matched)):min(from+data.Size, len(matched))] {
		data.Rows = append(data.Rows, row{Status: s, URL: d.o.Addresses.URL(s.User)})
	}
	data.Shown = len(data.Rows)
	return "instances", "Instances", data, nil
}

// groupsData is every group with its participants and their states.
type groupsData struct {
	Groups     []groupRow
	Templates  []templateRow
	StoredYAML bool // a groups-yaml is kept in the database
	Invites    []access.Invite
}

type groupRow struct {
	Name     string
	Title    string
	Template string // "" for sandbox:
	Members  []orchestrator.Status
	Running  int
}

// templateRow is one template on the groups page.
type templateRow struct {
	orchestrator.TemplateInfo
	Idle string // "10m pause", "never"
	Sets string
}

func (d *Dashboard) groups(r *http.Request) (string, string, any, error) {
	ctx := r.Context()
	gs, err := d.o.Store.Groups(ctx)
	if err != nil {
		return "groups", "Groups", nil, err
	}
	list, err := d.o.Orch.List(ctx, orchestrator.Filter{})
	if err != nil {
		return "groups", "Groups", nil, err
	}
	by := map[string][]orchestrator.Status{}
	for _, s := range list {
		by[s.Group] = append(by[s.Group], s)
	}
	var data groupsData
	if _, err := d.o.Files.Get(ctx, "groups-yaml"); err == nil {
		data.StoredYAML = true
	}
	if data.Invites, err = d.o.Access.Invites(ctx); err != nil {
		return "groups", "Groups", nil, err
	}
	ts, err := d.o.Orch.Templates(ctx)
	if err != nil {
		return "groups", "Groups", nil, err
	}
	for _, t := range ts {
		row := templateRow{TemplateInfo: t, Idle: "never", Sets: strings.Join(t.Template.Keys(), ", ")}
		if t.Settings.IdleTimeout > 0 {
			row.Idle = strings.TrimSuffix(t.Settings.IdleTimeout.D().String(), "0s") + " " + t.Settings.IdleAction
		}
		data.Templates = append(data.Templates, row)
	}
	for _, g := range gs {
		gr := groupRow{Name: g.Name, Title: g.Title, Template: d.o.Orch.SettingsFor(g.Name).Template, Members: by[g.Name]}
		for _, m := range gr.Members {
			if m.State == string(sandbox.StateRunning) {
				gr.Running++
			}
		}
		data.Groups = append(data.Groups, gr)
	}
	return "groups", "Groups", data, nil
}

// llmData is the LLM page: the server's status, and the gateway's slots
// and queue of each model.
type llmData struct {
	*llm.Status
	Queues   []gateway.QueueStat
	QueuesOn bool
}

func (d *Dashboard) llmPage(r *http.Request) (string, string, any, error) {
	if d.o.LLM == nil {
		return "llm", "LLM", nil, nil
	}
	st := d.o.LLM.Status(r.Context()) // fresh: this page is about it
	data := &llmData{Status: &st, QueuesOn: d.o.Queues != nil}
	if d.o.Queues != nil {
		data.Queues = d.o.Queues()
	}
	return "llm", "LLM", data, nil
}

// usage is the gateway's traffic over the last minutes, as the key ring
// sums it for everyone (empty when the gateway is off).
func (d *Dashboard) usage(ctx context.Context, minutes int) (keyring.UsageSummary, error) {
	if d.o.Keys == nil {
		return keyring.UsageSummary{Minutes: minutes, Total: keyring.Usage{PerMinute: make([]int64, minutes)}}, nil
	}
	return d.o.Keys.Summary(ctx, keyring.UsageQuery{Minutes: minutes})
}

// gatewayData is the gateway page.
type gatewayData struct {
	Enabled bool
	Limits  string
	Keys    []keyRow
	Usage   keyring.UsageSummary
	// Queues is each slot-limited model's slots and waiting line.
	Queues   []gateway.QueueStat
	QueuesOn bool
}

// keyRow is a key and its usage in the window.
type keyRow struct {
	store.GatewayKey
	keyring.Usage
	Rotated string
}

func (d *Dashboard) gateway(r *http.Request) (string, string, any, error) {
	ctx := r.Context()
	data := gatewayData{Enabled: d.o.Keys != nil, QueuesOn: d.o.Queues != nil}
	if d.o.Info != nil {
		data.Limits = d.o.Info().GatewayLimits
	}
	if d.o.Queues != nil {
		data.Queues = d.o.Queues()
	}
	minutes := clamp(atoi(r.URL.Query().Get("minutes"), 60), 5, 24*60)
	var err error
	if data.Usage, err = d.usage(ctx, minutes); err != nil || d.o.Keys == nil {
		return "gateway", "Gateway", data, err
	}
	ks, err := d.o.Keys.List(ctx)
	if err != nil {
		return "gateway", "Gateway", data, err
	}
	used := map[string]keyring.Usage{}
	for _, k := range data.Usage.Keys {
		used[k.Key] = k.Usage
	}
	for _, k := range ks {
		u, ok := used[k.ID]
		if !ok {
			u.PerMinute = make([]int64, minutes)
		}
		data.Keys = append(data.Keys, keyRow{GatewayKey: k, Usage: u, Rotated: k.RotatedAt.Local().Format(time.DateTime)})
	}
	slices.SortFunc(data.Keys, func(a, b keyRow) int { return cmp.Or(cmp.Compare(b.Tokens(), a.Tokens()), cmp.Compare(a.ID, b.ID)) })
	return "gateway", "Gateway", data, nil
}

// settingsData is the settings page.
type settingsData struct {
	Tokens []auth.TokenInfo
	Scopes []string
	Info   Info
	TLS    TLSInfo
	CAURL  string
	Files  []store.ConfigFile
	Edit   store.ConfigFile
	Kinds  []string
	Events []store.Event
	Before int64 // the audit log's next page
	Errors []configfiles.Problem
}

func (d *Dashboard) settings(r *http.Request) (string, string, any, error) {
	data, err := d.settingsData(r, store.ConfigFile{})
	if name := r.URL.Query().Get("file"); name != "" && err == nil {
		data.Edit, err = d.o.Files.Get(r.Context(), name)
	}
	return "settings", "Settings", data, err
}

func (d *Dashboard) settingsData(r *http.Request, edit store.ConfigFile) (settingsData, error) {
	ctx := r.Context()
	data := settingsData{Edit: edit, Kinds: configfiles.Kinds, CAURL: d.o.Addresses.MainURL() + "ca"}
	if d.o.Info != nil {
		data.Info = d.o.Info()
	}
	if d.o.TLS != nil {
		data.TLS = d.o.TLS()
	}
	var err error
	if data.Files, err = d.o.Files.List(ctx); err != nil {
		return data, err
	}
	if data.Tokens, err = d.o.Tokens.List(ctx); err != nil {
		return data, err
	}
	data.Scopes = auth.AllScopes
	// The audit log, newest first, a page at a time.
	before := int64(atoi(r.URL.Query().Get("before"), 0))
	evs, err := d.o.Store.Events(ctx, 0, 1000)
	if err != nil {
		return data, err
	}
	slices.Reverse(evs)
	for _, e := range evs {
		if before > 0 && e.ID >= before {
			continue
		}
		if len(data.Events) == 100 {
			data.Before = data.Events[99].ID
			break
		}
		data.Events = append(data.Events, e)
	}
	return data, nil
}

func atoi(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

func clamp(n, lo, hi int) int { return max(lo, min(n, hi)) }

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"sparkline": sparkline,
	"bars":      bars,
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := time.Since(t)
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh", int(d.Hours()))
		}
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	},
	"clock":   func(t time.Time) string { return t.Local().Format("15:04:05") },
	"date":    func(t time.Time) string { return t.Local().Format(time.DateTime) },
	"add":     func(a, b int) int { return a + b },
	"sub":     func(a, b int) int { return a - b },
	"num":     humanNumber,
	"seconds": func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
	"tps":     func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"join":    strings.Join,
	"bytes":   humanBytes,
	"pbytes": func(b *int64) string {
		if b == nil {
			return "–"
		}
		return humanBytes(*b)
	},
	"cores": func(c *float64) string {
		if c == nil {
			return "–"
		}
		return strconv.FormatFloat(*c, 'f', 2, 64)
	},
	"hours":       func(s float64) string { return strconv.FormatFloat(s/3600, 'f', 1, 64) + "h" },
	"bulkActions": func() []string { return []string{"start", "stop", "pause", "resume", "recreate", "remove"} },
	"days": func(t time.Time) int {
		return int(time.Until(t).Hours() / 24)
	},
}

// humanBytes writes a size in binary units ("1.5 GiB"; "unknown" below 0).
func humanBytes(b int64) string {
	const unit = 1024
	switch {
	case b < 0:
		return "unknown"
	case b < unit:
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// humanNumber writes 1234567 as 1.2M.
func humanNumber(n int64) string {
	switch {
	case n >= 1_000_000:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	case n >= 10_000:
		return strconv.FormatInt(n/1000, 10) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// buckets sums values into at most n buckets, so a day of minutes draws as
// fast as an hour.
func buckets(values []int64, n int) []int64 {
	if len(values) <= n {
		return values
	}
	out := make([]int64, n)
	for i, v := range values {
		out[i*n/len(values)] += v
	}
	return out
}

// sparkline draws values as a small SVG line (server-side: no script).
func sparkline(values []int64) template.HTML {
	const w, h = 120, 24
	values = buckets(values, 60)
	if len(values) == 0 {
		return ""
	}
	var top int64 = 1
	for _, v := range values {
		top = max(top, v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="tokens per minute"><polyline fill="none" stroke="currentColor" stroke-width="1.5" points="`, w, h, w, h)
	step := float64(w) / float64(max(1, len(values)-1))
	for i, v := range values {
		fmt.Fprintf(&b, "%.1f,%.1f ", float64(i)*step, float64(h-1)-float64(v)/float64(top)*float64(h-2))
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String())
}

// bars draws values as an SVG bar chart with its maximum labelled.
func bars(values []int64, label string) template.HTML {
	const w, h = 720, 140
	if len(values) > 120 {
		label += " (bars of " + strconv.Itoa((len(values)+119)/120) + " minutes)"
		values = buckets(values, 120)
	}
	if len(values) == 0 {
		return ""
	}
	var top int64 = 1
	for _, v := range values {
		top = max(top, v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="bars" viewBox="0 0 %d %d" role="img" aria-label="%s">`, w, h+16, template.HTMLEscapeString(label))
	bw := float64(w) / float64(len(values))
	for i, v := range values {
		bh := float64(v) / float64(top) * float64(h)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%d</title></rect>`, float64(i)*bw+1, float64(h)-bh, max(bw-2, 1), bh, v)
	}
	fmt.Fprintf(&b, `<text x="0" y="%d">%s, max %s</text></svg>`, h+14, template.HTMLEscapeString(label), humanNumber(top))
	return template.HTML(b.String())
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
