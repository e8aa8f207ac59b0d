// Package wire is the JSON of THON's REST API (/api/v1): every request
// body and every answer, as the daemon writes them and the client reads
// them. It imports only the standard library, so a program talking to THON
// pulls in nothing of the daemon; the daemon converts its own records into
// these types at the edge, and its OpenAPI document is checked against them.
package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Error is what the API answers with a 4xx or 5xx status.
type Error struct {
	Error    string    `json:"error"`
	Hint     string    `json:"hint,omitempty"`
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one thing wrong with a configuration, where it is, and how to
// fix it.
type Problem struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Col  int    `json:"col,omitempty"`
	Msg  string `json:"msg"`            // what is wrong
	Hint string `json:"hint,omitempty"` // how to fix it; may be empty
}

// String is "file:line:col: msg (hint)", leaving out what is unknown.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File + ":")
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, "%d:", p.Col)
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	b.WriteString(p.Msg)
	if p.Hint != "" {
		b.WriteString(" (" + p.Hint + ")")
	}
	return b.String()
}

// Info describes the running daemon.
type Info struct {
	Version    string    `json:"version"`
	ConfigPath string    `json:"config_path"`
	DataDir    string    `json:"data_dir"`
	Runtime    string    `json:"runtime"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
}

// InfoDetail is the answer of GET /api/v1/info.
type InfoDetail struct {
	Info
	// FrontDoor is the HTTPS front door's main URL (API, CA download at /ca).
	FrontDoor string `json:"front_door,omitempty"`
	// Dashboard is where organizers sign in to the dashboard.
	Dashboard string `json:"dashboard,omitempty"`
	Engine    Engine `json:"engine"`
	// Sandbox is the sandbox settings in force, as thon.yaml's sandbox:
	// section (the Sandbox schema of the OpenAPI document).
	Sandbox json.RawMessage `json:"sandbox"`
	// TLS is what the front door's certificates are, with a warning when
	// one is not served as configured (an ACME name without a certificate).
	TLS *TLSStatus `json:"tls,omitempty"`
}

// Engine is the sandbox engine and whether it answers.
type Engine struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// TLSStatus is what the front door's certificates are.
type TLSStatus struct {
	// Source is "local CA" or "own certificate": what handshakes get that
	// are not for an ACME name, and ACME names without a certificate.
	Source string `json:"source"`
	// ACME lists the names certificates are got for from access.acme's CA.
	ACME []TLSName `json:"acme,omitempty"`
	// Warning says what is not served as configured; "" when all is well.
	Warning string `json:"warning,omitempty"`
}

// TLSName is one name's certificate from the ACME CA.
type TLSName struct {
	Name string `json:"name"`
	// NotAfter is when its certificate expires; absent while it has none.
	NotAfter time.Time `json:"not_after,omitzero"`
	// Error is the last attempt's failure, when it failed.
	Error string `json:"error,omitempty"`
}

// Health is the answer of GET /api/v1/health.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

// Shutdown is the answer of POST /api/v1/shutdown.
type Shutdown struct {
	Status string `json:"status"` // "shutting down"
}
