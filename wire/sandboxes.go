package wire

import "time"

// Group is a group and its participants.
type Group struct {
	Name  string   `json:"name"`
	Title string   `json:"title,omitempty"` // what people read; "" shows the name
	Users []string `json:"users"`
	// Template is the template its sandboxes are made from ("": sandbox:).
	Template  string    `json:"template,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Template is a named set of sandbox settings groups use (templates: in
// thon.yaml), with the settings its sandboxes get over sandbox:.
type Template struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Sets lists the settings the template gives itself ("image",
	// "limits.memory", "env.NODE_ENV"); the others are sandbox:'s.
	Sets        []string          `json:"sets"`
	Image       string            `json:"image"`
	CPU         float64           `json:"cpu"`
	MemoryBytes int64             `json:"memory_bytes"`
	Pids        int64             `json:"pids"`
	Env         map[string]string `json:"env"`
	Workspace   string            `json:"workspace"`
	// IdleTimeout and MaxLifetime are Go durations ("45m0s"; "0s": off).
	IdleTimeout string `json:"idle_timeout"`
	IdleAction  string `json:"idle_action"`
	MaxLifetime string `json:"max_lifetime"`
	// Groups name the template; Participants are in them, and Outdated of
	// their sandboxes were made from other settings (recreate applies these).
	Groups       []string `json:"groups"`
	Participants int      `json:"participants"`
	Outdated     int      `json:"outdated"`
}

// User is a participant.
type User struct {
	Name      string    `json:"name"`
	Group     string    `json:"group"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// GroupRequest creates a group or renames one.
type GroupRequest struct {
	Name string `json:"name"`
}

// UserRequest creates a participant in a group.
type UserRequest struct {
	Name  string `json:"name"`
	Group string `json:"group"`
}

// MoveRequest puts a participant in another group.
type MoveRequest struct {
	Group string `json:"group"`
}

// GroupMembers is a group and who is in it, as thon.yaml lists them.
type GroupMembers struct {
	Name  string   `json:"name"`
	Users []string `json:"users"`
}

// ImportUsersRequest adds participants by group (nobody is deleted; someone
// listed in another group is moved).
type ImportUsersRequest struct {
	Groups []GroupMembers `json:"groups"`
}

// ImportResult says what an import changed.
type ImportResult struct {
	GroupsAdded []string          `json:"groups_added"`
	UsersAdded  []string          `json:"users_added"`
	UsersMoved  map[string]string `json:"users_moved"` // user → new group
	// Updated are groups whose title and users whose e-mail changed.
	Updated   []string `json:"updated,omitempty"`
	Unchanged int      `json:"unchanged"`
	// NotListed are users in the store that the import did not mention; they are kept.
	NotListed []string `json:"not_listed"`
}

// Event is an entry of the audit log: who did what to what.
type Event struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Status is a participant's sandbox.
type Status struct {
	User  string `json:"user"`
	Group string `json:"group"`
	// Template is the template the sandbox is made from ("": sandbox:).
	Template  string `json:"template,omitempty"`
	State     string `json:"state"` // running, starting, paused, stopped, asleep, expired, failed, created, missing
	Workspace string `json:"workspace"`
	Endpoint  string `json:"endpoint,omitempty"`
	// URL is where the participant opens their IDE through the front door
	// (credentials come with an access link).
	URL     string    `json:"url,omitempty"`
	Image   string    `json:"image,omitempty"`
	Created time.Time `json:"created,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
	Error   string    `json:"error,omitempty"`
	// Outdated: the sandbox was created from other settings or another group;
	// `recreate` applies the current ones (the workspace is kept).
	Outdated bool `json:"outdated,omitempty"`
	// LastActive is when the participant last did something in their IDE
	// (typing, clicking, a terminal; an open tab alone is not activity).
	LastActive time.Time `json:"last_active,omitzero"`
	// Expires is when the sandbox stops unless an organizer renews it
	// (sandbox.max_lifetime).
	Expires time.Time `json:"expires,omitzero"`
	// What the running (or paused) sandbox used at the last sample: CPU in
	// cores, memory and the workspace's disk use in bytes; absent when not
	// running, not sampled yet, or not measured by the engine (Kubernetes
	// without metrics-server).
	CPU         *float64 `json:"cpu,omitempty"`
	Memory      *int64   `json:"memory,omitempty"`
	MemoryLimit int64    `json:"memory_limit,omitempty"`
	Disk        *int64   `json:"disk,omitempty"`
	// RunningSeconds is how long the sandbox has run over the event
	// (stopped and paused time not counted; kept across restarts).
	RunningSeconds float64 `json:"running_seconds,omitempty"`
}

// Instance is a sandbox as the engine reports it.
type Instance struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	User     string    `json:"user"`
	Group    string    `json:"group"`
	Image    string    `json:"image"`
	State    string    `json:"state"`
	SpecHash string    `json:"spec_hash,omitempty"`
	Created  time.Time `json:"created"`
	// Endpoint is host:port where the daemon reaches the IDE ("" when not running).
	Endpoint string `json:"endpoint,omitempty"`
	// ExitCode and Reason explain a stopped sandbox (for example OOM-killed),
	// or one the engine is restarting after a crash.
	ExitCode int    `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// SandboxList is every selected participant's sandbox, and the managed
// sandboxes whose participant is gone.
type SandboxList struct {
	Items   []Status   `json:"items"`
	Orphans []Instance `json:"orphans"`
	// Usage is the machine's total beside the sandboxes' last sample.
	Resources Resources `json:"resources"`
	// EngineError says why the container engine has not answered since
	// EngineDownSince; the states are then the last ones THON saw.
	EngineError     string    `json:"engine_error,omitempty"`
	EngineDownSince time.Time `json:"engine_down_since,omitzero"`
}

// Resources is the last sample of what the running sandboxes use, summed, and
// what the machine (the engine's host, or the cluster's nodes) has.
type Resources struct {
	// At is when the sample was taken (absent before the first).
	At time.Time `json:"at,omitzero"`
	// CPU in cores, Memory and Disk (the workspaces) in bytes, summed over
	// the running sandboxes measured; Sandboxes counts them.
	Sandboxes int     `json:"sandboxes"`
	CPU       float64 `json:"cpu"`
	Memory    int64   `json:"memory"`
	Disk      int64   `json:"disk"`
	// MachineCPUs and MachineMemory: what the machine has (-1: unknown).
	MachineCPUs   float64 `json:"machine_cpus"`
	MachineMemory int64   `json:"machine_memory"`
	// Note says why measures are unknown (Kubernetes without
	// metrics-server), Error why the last sample failed.
	Note  string `json:"note,omitempty"`
	Error string `json:"error,omitempty"`
}

// Result is what one action did to one sandbox.
type Result struct {
	User     string  `json:"user"`
	Group    string  `json:"group"`
	Outcome  string  `json:"outcome"` // ok, unchanged, failed, skipped
	State    string  `json:"state"`
	Endpoint string  `json:"endpoint,omitempty"`
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"seconds"`
}

// BulkRequest runs an action (start, stop, pause, resume, recreate,
// remove) on the selected sandboxes (all when no group or user is named).
type BulkRequest struct {
	Action string   `json:"action"`
	Groups []string `json:"groups,omitempty"`
	Users  []string `json:"users,omitempty"`
	Purge  bool     `json:"purge,omitempty"`
}

// Progress is one sandbox's step in a bulk action.
type Progress struct {
	User  string  `json:"user"`
	Phase string  `json:"phase"` // creating | starting | waiting | done
	Done  int     `json:"done"`
	Total int     `json:"total"`
	Res   *Result `json:"result,omitempty"` // set when Phase == "done"
}

// Summary is a bulk action's outcome.
type Summary struct {
	Action  string         `json:"action"`
	Total   int            `json:"total"`
	Counts  map[string]int `json:"counts"`
	Failed  int            `json:"failed"`
	Results []Result       `json:"results"`
	Seconds float64        `json:"seconds"`
}

// BulkLine is one line of the NDJSON stream a bulk action answers with when
// asked with Accept: application/x-ndjson: progress lines, then the summary.
type BulkLine struct {
	Progress *Progress `json:"progress,omitempty"`
	Summary  *Summary  `json:"summary,omitempty"`
}

// ReconcileReport is what comparing the store with the engine found.
type ReconcileReport struct {
	Adopted []string   `json:"adopted"` // sandboxes found on the engine and taken over as they are
	Missing []string   `json:"missing"` // recorded in the store, gone from the engine
	Changed []string   `json:"changed"` // state on the engine differs from the record
	Orphans []Instance `json:"orphans"` // managed sandboxes whose user is not in the store
}

// UsageTick is the gateway's traffic this minute, as the event stream
// reports it every few seconds.
type UsageTick struct {
	Requests   int64 `json:"requests"`
	Tokens     int64 `json:"tokens"`
	Rejections int64 `json:"rejections"`
}

// Hello is the event stream's first event: the daemon's start (a new one
// means it restarted: reload).
type Hello struct {
	Started time.Time `json:"started"`
	Version string    `json:"version"`
}

// RenewRequest gives a sandbox more time (sandbox.max_lifetime).
type RenewRequest struct {
	// For is how long from now, e.g. "2h"; empty: the configured lifetime.
	For string `json:"for,omitempty"`
}

// Renewed says until when a sandbox runs now.
type Renewed struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
	State   string    `json:"state"`
}
