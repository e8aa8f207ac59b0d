// Package orchestrator turns desired state (the participants in the store)
// into actual state (a running sandbox each): the bounded spawn queue, bulk
// actions, adoption of running sandboxes after a restart, and the audit log.
//
// It speaks only to sandbox.Runtime and the store; the API, the CLI (through
// the API) and the dashboard all call it, so there is one copy of the logic.
package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/activity"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/sandbox"
	"github.com/thon-dev/thon/internal/store"
)

// Action is something done to a sandbox.
type Action string

const (
	ActionStart    Action = "start" // create if missing, start if stopped, resume if paused; wait until healthy
	ActionStop     Action = "stop"
	ActionPause    Action = "pause"
	ActionResume   Action = "resume"
	ActionRecreate Action = "recreate" // remove (keeping the workspace) and start afresh
	ActionRemove   Action = "remove"
)

// Actions lists every action, for validation and documentation.
var Actions = []Action{ActionStart, ActionStop, ActionPause, ActionResume, ActionRecreate, ActionRemove}

// Outcomes of one action on one sandbox.
const (
	OutcomeCreated   = "created"
	OutcomeStarted   = "started"
	OutcomeResumed   = "resumed"
	OutcomeRecreated = "recreated"
	OutcomeStopped   = "stopped"
	OutcomePaused    = "paused"
	OutcomeRemoved   = "removed"
	OutcomeUnchanged = "unchanged"
	OutcomeFailed    = "failed"
)

// Options configures an Orchestrator.
type Options struct {
	Runtime sandbox.Runtime
	Store   *store.Store
	// Sandboxes are the settings sandboxes are made from: sandbox:, the
	// templates and which group uses which (config.Config.SandboxSet).
	Sandboxes config.SandboxSet
	Logger    *slog.Logger
	// OnUsersChanged, if set, is called after participants were added or
	// removed (the front door opens or closes their ports).
	OnUsersChanged func(ctx context.Context)
	// Personalize, if set, adds what services give one participant's
	// sandbox to its spec: the AI gateway's key and URL in the environment,
	// the assistants' config files. It is part of the spec: a change marks
	// the sandbox outdated. It must not keep spec.Env (shared by all specs)
	// but replace it. template is the template of the participant's group
	// ("" for none), whose assistant files it uses.
	Personalize func(spec *sandbox.Spec, template string)
	// OnImport, if set, applies the rest of a thon.yaml that `thon run`
	// sends (LLM and assistant settings) before its sandbox settings; its
	// error refuses the import.
	OnImport func(ctx context.Context, cfg *config.Config) error
	// ResyncInterval is how often the engine's view is folded into the store
	// (sandboxes stopped or removed behind THON's back). 0 means 10s.
	ResyncInterval time.Duration
	// UsageInterval is how often Run samples what the running sandboxes
	// use (and advances their running time). 0 means
	// DefaultUsageInterval; negative, never.
	UsageInterval time.Duration
	// Activity is what participants' browsers do, as the front door sees
	// it (nil: no activity is known, and no sandbox is idle).
	Activity *activity.Tracker
	// SleepInterval is how often idle sandboxes are looked for and activity
	// recorded. 0 means 30s.
	SleepInterval time.Duration
	// Now is the clock of idle times and lifetimes (time.Now when nil).
	Now func() time.Time
}

// Orchestrator owns the sandboxes of one event.
type Orchestrator struct {
	usersChanged func(ctx context.Context)
	personalize  func(spec *sandbox.Spec, template string)
	onImport     func(ctx context.Context, cfg *config.Config) error
	rt           sandbox.Runtime
	caps         sandbox.Capabilities
	st           *store.Store
	log          *slog.Logger
	health       *http.Client
	resync       time.Duration
	usageEvery   time.Duration
	use          usage // the last usage sample
	engine       engineState
	kick         chan struct{} // Resync asks Run for a reconcile now
	exports      slots         // exports running at once
	activity     *activity.Tracker
	sleepEvery   time.Duration
	now          func() time.Time

	mu       sync.Mutex
	settings config.SandboxSet
	locks    map[string]*userLock // per-user operation lock
	busy     map[string]string    // user → transient state ("starting") while an operation runs
	ops      map[string]uint64    // user → count of operations begun or ended, for Reconcile
	live     map[string]Live      // user → last recorded state, for routing without a database read
	// reread, when not nil: the engine's event stream broke since it was
	// last read (see watchEngine), so no sandbox is routed to until a
	// reconcile reads them again, but those an operation read meanwhile
	// (its keys). unsureGen counts the breaks, so a reconcile clears only
	// what it saw.
	reread    map[string]bool
	unsureGen uint64
	orphans   []sandbox.Instance
	sleeping  map[string]string // user → why their sandbox sleeps (store.SleepIdle, SleepLifetime)
	wakes     wakeQueue
	watch     watchers
	// specGen counts changes of what specs are made from; hashes caches
	// each participant's spec hash for one generation.
	specGen uint64
	hashes  map[string]cachedHash
}

type userLock struct {
	mu   sync.Mutex
	refs int
}

// New returns an Orchestrator. Call Reconcile once the engine answers.
func New(o Options) *Orchestrator {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ResyncInterval == 0 {
		o.ResyncInterval = 10 * time.Second
	}
	if o.UsageInterval == 0 {
		o.UsageInterval = DefaultUsageInterval
	}
	if o.OnUsersChanged == nil {
		o.OnUsersChanged = func(context.Context) {}
	}
	if o.SleepInterval == 0 {
		o.SleepInterval = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Orchestrator{
		usersChanged: o.OnUsersChanged,
		personalize:  o.Personalize,
		onImport:     o.OnImport,
		rt:           o.Runtime,
		caps:         o.Runtime.Capabilities(),
		st:           o.Store,
		log:          o.Logger,
		resync:       o.ResyncInterval,
		kick:         make(chan struct{}, 1),
		usageEvery:   o.UsageInterval,
		activity:     o.Activity,
		sleepEvery:   o.SleepInterval,
		now:          o.Now,
		sleeping:     map[string]string{},
		wakes:        wakeQueue{active: map[string]bool{}, since: map[string]time.Time{}},
		settings:     o.Sandboxes,
		health:       &http.Client{Timeout: 3 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		locks:        map[string]*userLock{},
		busy:         map[string]string{},
		ops:          map[string]uint64{},
		live:         map[string]Live{},
	}
}

// Runtime returns the engine in use.
func (o *Orchestrator) Runtime() sandbox.Runtime { return o.rt }

// Settings returns sandbox: as applied: what sandboxes of a group without
// a template are created with, and the settings of the event as a whole
// (concurrency, startup timeout).
func (o *Orchestrator) Settings() config.Sandbox {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.settings.Base
}

// SettingsFor returns the settings a group's sandboxes are created with
// and sleep by: sandbox:, the group's template, its own idle policy.
// Everything that asks which settings a participant's sandbox gets asks
// this.
func (o *Orchestrator) SettingsFor(group string) config.Effective {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.settings.For(group)
}

// Sandboxes returns every setting sandboxes are made from: sandbox:, the
// templates and what each group says.
func (o *Orchestrator) Sandboxes() config.SandboxSet {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.settings
}

// ApplySettings replaces the sandbox settings and templates (validated by
// the caller) and records them. Sandboxes whose spec changes with them (a
// template's image, say) show as outdated until recreated.
func (o *Orchestrator) ApplySettings(ctx context.Context, actor string, s config.SandboxSet) error {
	stored := []struct {
		key string
		v   any
	}{
		{"sandbox", s.Base},
		{"templates", struct {
			Templates config.Templates               `json:"templates"`
			Groups    map[string]config.GroupSandbox `json:"groups,omitempty"`
		}{s.Templates, s.Groups}},
	}
	for _, kv := range stored {
		b, err := json.Marshal(kv.v)
		if err != nil {
			return err
		}
		old, _ := o.st.Setting(ctx, kv.key)
		if err := o.st.PutSetting(ctx, kv.key, string(b)); err != nil {
			return fmt.Errorf("store %s settings: %w", kv.key, err)
		}
		if old != string(b) {
			o.event(ctx, actor, "settings.apply", kv.key, string(b))
		}
	}
	o.mu.Lock()
	o.settings = s
	o.specGen++
	o.mu.Unlock()
	return nil
}

// Working reports whether an operation on some sandbox is under way (a
// bulk start, say): a time to leave the LLM server alone.
func (o *Orchestrator) Working() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.busy) > 0
}

// lock serialises operations on one user's sandbox.
func (o *Orchestrator) lock(user string) func() {
	o.mu.Lock()
	l := o.locks[user]
	if l == nil {
		l = &userLock{}
		o.locks[user] = l
	}
	l.refs++
	o.mu.Unlock()
	l.mu.Lock()
	o.mu.Lock()
	o.ops[user]++
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		o.ops[user]++
		if l.refs--; l.refs == 0 {
			delete(o.locks, user)
		}
		o.mu.Unlock()
		l.mu.Unlock()
	}
}

// opsSnapshot is the operation counters at one moment.
func (o *Orchestrator) opsSnapshot() map[string]uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.ops)
}

// quiet reports whether no operation on user ran or runs since snap was taken:
// only then may Reconcile write what it read from the engine.
func (o *Orchestrator) quiet(user string, snap map[string]uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.locks[user] == nil && o.ops[user] == snap[user]
}

func (o *Orchestrator) setBusy(user, state string) {
	o.mu.Lock()
	if state == "" {
		delete(o.busy, user)
	} else {
		o.busy[user] = state
	}
	o.mu.Unlock()
	o.changed(user)
}

func (o *Orchestrator) event(ctx context.Context, actor, action, target, detail string) {
	if _, err := o.st.AddEvent(context.WithoutCancel(ctx), actor, action, target, detail); err != nil {
		o.log.Error("audit log write failed", "action", action, "target", target, "err", err)
	}
}

// Spec builds the desired sandbox of a participant from the current
// settings of their group.
func (o *Orchestrator) Spec(user, group string) sandbox.Spec {
	return o.specFrom(o.SettingsFor(group), user, group)
}

// specFrom adds what services give each sandbox (the AI gateway's key and
// URL, assistant configs) to the settings' spec.
func (o *Orchestrator) specFrom(s config.Effective, user, group string) sandbox.Spec {
	spec := SpecFrom(s.Sandbox, user, group)
	if o.personalize != nil {
		o.personalize(&spec, s.Template)
	}
	return spec
}

type cachedHash struct {
	group string
	gen   uint64
	hash  string
}

// SpecsChanged tells the orchestrator that what services add to specs
// changed (assistant settings, a rotated or revoked key): the cached spec
// hashes, which tell a sandbox outdated, are thrown away.
func (o *Orchestrator) SpecsChanged() {
	o.mu.Lock()
	o.specGen++
	o.mu.Unlock()
}

// specHash is the hash of user's current spec, from a cache: building a
// spec writes assistant files and derives a key, too slow to redo for 500
// participants on every status read.
func (o *Orchestrator) specHash(s config.Effective, user, group string) string {
	o.mu.Lock()
	gen := o.specGen
	c, ok := o.hashes[user]
	o.mu.Unlock()
	if ok && c.gen == gen && c.group == group {
		return c.hash
	}
	h := o.specFrom(s, user, group).Hash()
	o.mu.Lock()
	if o.hashes == nil {
		o.hashes = map[string]cachedHash{}
	}
	if o.specGen == gen { // not changed meanwhile
		o.hashes[user] = cachedHash{group: group, gen: gen, hash: h}
	}
	o.mu.Unlock()
	return h
}

// SpecFrom builds a sandbox.Spec from sandbox settings.
func SpecFrom(s config.Sandbox, user, group string) sandbox.Spec {
	return sandbox.Spec{
		User:       user,
		Group:      group,
		Image:      s.Image,
		Port:       s.Port,
		HealthPath: s.HealthPath,
		Env:        s.Env,
		Limits: sandbox.Limits{
			NanoCPUs:    int64(s.Limits.CPU * 1e9),
			MemoryBytes: int64(s.Limits.Memory),
			Pids:        s.Limits.Pids,
		},
		Workspace:    sandbox.WorkspaceMode(s.Workspace),
		WorkspaceDir: s.WorkspaceDir,
	}
}

// Status is what THON knows of one participant's sandbox.
type Status struct {
	User  string `json:"user"`
	Group string `json:"group"`
	// Template is the template the sandbox is made from ("": sandbox:).
	Template  string `json:"template,omitempty"`
	State     string `json:"state"`
	Workspace string `json:"workspace"`
	Endpoint  string `json:"endpoint,omitempty"`
	// URL is where the participant opens their IDE through the front door
	// (filled in by the API; credentials come with an access link).
	URL     string    `json:"url,omitempty"`
	Image   string    `json:"image,omitempty"`
	Created time.Time `json:"created,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
	Error   string    `json:"error,omitempty"`
	// Outdated: the sandbox was created from other settings or another group;
	// `recreate` applies the current ones (the workspace is kept).
	Outdated bool `json:"outdated,omitempty"`
	// LastActive is when the participant last did something in their IDE
	// (zero: not since THON has been watching).
	LastActive time.Time `json:"last_active,omitzero"`
	// Expires is when the sandbox stops unless renewed (sandbox.max_lifetime).
	Expires time.Time `json:"expires,omitzero"`
	// What the running (or paused) sandbox used at the last sample: CPU in
	// cores, memory and the workspace's disk use in bytes; nil when not
	// running, not sampled yet, or not measured by the engine.
	CPU         *float64 `json:"cpu,omitempty"`
	Memory      *int64   `json:"memory,omitempty"`
	MemoryLimit int64    `json:"memory_limit,omitempty"`
	Disk        *int64   `json:"disk,omitempty"`
	// RunningSeconds is how long the sandbox has run over the event
	// (stopped and paused time not counted; kept across restarts).
	RunningSeconds float64 `json:"running_seconds,omitempty"`
}

// Filter selects participants. Empty means everyone.
type Filter struct {
	Groups []string `json:"groups,omitempty"`
	Users  []string `json:"users,omitempty"`
}

func (f Filter) match(u store.User) bool {
	if len(f.Groups) == 0 && len(f.Users) == 0 {
		return true
	}
	for _, g := range f.Groups {
		if g == u.Group {
			return true
		}
	}
	for _, n := range f.Users {
		if n == u.Name {
			return true
		}
	}
	return false
}

// List returns the status of every selected participant, by group then name.
// It reads the store only (the engine is folded in by Reconcile and the
// resync loop), so it stays fast with hundreds of participants.
func (o *Orchestrator) List(ctx context.Context, f Filter) ([]Status, error) {
	users, err := o.st.Users(ctx)
	if err != nil {
		return nil, err
	}
	boxes, err := o.st.Sandboxes(ctx)
	if err != nil {
		return nil, err
	}
	running, err := o.st.RunningTimes(ctx)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	set := o.settings
	busy := make(map[string]string, len(o.busy))
	for k, v := range o.busy {
		busy[k] = v
	}
	o.mu.Unlock()
	use := o.Usage()
	out := make([]Status, 0, len(users))
	for _, u := range users {
		if !f.match(u) {
			continue
		}
		st := o.status(u, boxes, busy, set.For(u.Group))
		st.RunningSeconds = running[u.Name].Total.Seconds()
		if r, ok := use.Sandboxes[u.Name]; ok && (st.State == string(sandbox.StateRunning) || st.State == string(sandbox.StatePaused)) {
			st.CPU, st.Memory, st.Disk = known(r.CPU), known(r.Memory), known(r.Disk)
			st.MemoryLimit = max(r.MemoryLimit, 0)
		}
		out = append(out, st)
	}
	return out, nil
}

// known is v, or nil when it is sandbox.Unknown.
func known[T int64 | float64](v T) *T {
	if v == sandbox.Unknown {
		return nil
	}
	return &v
}

func (o *Orchestrator) status(u store.User, boxes map[string]store.Sandbox, busy map[string]string, s config.Effective) Status {
	st := Status{User: u.Name, Group: u.Group, Template: s.Template, State: string(sandbox.StateMissing), Workspace: s.Workspace}
	if b, ok := boxes[u.Name]; ok {
		st.State, st.Endpoint, st.Image, st.Error = shownState(b.State, b.Sleep), b.Endpoint, b.Image, b.Error
		st.Created, st.Updated = b.CreatedAt, b.UpdatedAt
		st.LastActive, st.Expires = b.LastActive, b.Expires
		if o.activity != nil {
			if t := o.activity.Last(u.Name); t.After(st.LastActive) {
				st.LastActive = t
			}
		}
		if s.MaxLifetime <= 0 {
			st.Expires = time.Time{}
		}
		if b.Workspace != "" {
			st.Workspace = b.Workspace
		}
		if b.SpecHash != "" && b.State != string(sandbox.StateMissing) {
			st.Outdated = b.SpecHash != o.specHash(s, u.Name, u.Group)
		}
	}
	if t, ok := busy[u.Name]; ok {
		st.State = t
	}
	return st
}

// Get returns one participant's status.
func (o *Orchestrator) Get(ctx context.Context, user string) (Status, error) {
	list, err := o.List(ctx, Filter{Users: []string{user}})
	if err != nil {
		return Status{}, err
	}
	if len(list) == 0 {
		return Status{}, fmt.Errorf("user %s: %w", user, store.ErrNotFound)
	}
	return list[0], nil
}

// Orphans are managed sandboxes whose user is not in the store.
func (o *Orchestrator) Orphans() []sandbox.Instance {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]sandbox.Instance(nil), o.orphans...)
}

// Logs streams a participant's sandbox output.
func (o *Orchestrator) Logs(ctx context.Context, user string, opts sandbox.LogOptions) (io.ReadCloser, error) {
	if _, err := o.st.User(ctx, user); err != nil {
		return nil, err
	}
	return o.rt.Logs(ctx, user, opts)
}

// Live is what the front door needs to route a request to a sandbox.
type Live struct {
	State    string // a sandbox.State, "starting" while an operation brings it up, StateAsleep, StateExpired
	Endpoint string // host:port of the IDE while running
	// Queue is how many wakes are ahead of this sandbox's (0: it is being
	// woken; -1: it is not waking).
	Queue int
}

// Live returns the last recorded state of user's sandbox from memory (the
// store on the first call for a user).
func (o *Orchestrator) Live(ctx context.Context, user string) (Live, error) {
	o.mu.Lock()
	l, ok := o.live[user]
	busy := o.busy[user]
	o.mu.Unlock()
	if !ok {
		b, err := o.st.Sandbox(ctx, user)
		switch {
		case errors.Is(err, store.ErrNotFound):
			l = Live{State: string(sandbox.StateMissing)}
		case err != nil:
			return Live{}, err
		default:
			l = Live{State: b.State, Endpoint: b.Endpoint}
		}
		o.setLive(user, l, false)
	}
	if busy != "" {
		l.State = busy
	}
	o.mu.Lock()
	l.State = shownState(l.State, o.sleeping[user])
	l.Queue = o.queuePosition(user)
	if o.reread != nil && !o.reread[user] && l.State == string(sandbox.StateRunning) {
		// Its address may be another sandbox's now: wait for the engine's word.
		l.State, l.Endpoint = string(sandbox.StateStarting), ""
	}
	o.mu.Unlock()
	if l.Queue >= 0 && busy == "" {
		l.State = string(sandbox.StateStarting) // waiting for its turn to wake
	}
	return l, nil
}

// setLive caches a sandbox's state; a read from the store (overwrite false)
// never replaces what an operation recorded meanwhile.
func (o *Orchestrator) setLive(user string, l Live, overwrite bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.live[user]; ok && !overwrite {
		return
	}
	o.live[user] = l
}

// record writes what the engine says about a sandbox into the store.
func (o *Orchestrator) record(ctx context.Context, inst sandbox.Instance, workspace, errMsg string) {
	b := store.Sandbox{
		User: inst.User, InstanceID: inst.ID, State: string(inst.State), Endpoint: inst.Endpoint,
		Image: inst.Image, SpecHash: inst.SpecHash, Workspace: workspace, Error: errMsg, CreatedAt: inst.Created,
	}
	if inst.State != sandbox.StateRunning {
		b.Endpoint = ""
	}
	o.setLive(inst.User, Live{State: b.State, Endpoint: b.Endpoint}, true)
	o.mu.Lock()
	if o.reread != nil {
		o.reread[inst.User] = true // the engine's word, just now
	}
	o.mu.Unlock()
	if err := o.st.PutSandbox(context.WithoutCancel(ctx), b); err != nil {
		o.log.Error("record sandbox state", "user", inst.User, "err", err)
	}
	o.changed(inst.User)
}

func (o *Orchestrator) recordMissing(ctx context.Context, user, errMsg string) {
	o.record(ctx, sandbox.Instance{User: user, State: sandbox.StateMissing}, "", errMsg)
}

// ErrUnknownAction is returned for an action THON does not know.
var ErrUnknownAction = errors.New("unknown action")

// ParseAction validates an action name from the edge.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("%w %q: use one of start, stop, pause, resume, recreate, remove", ErrUnknownAction, s)
}
