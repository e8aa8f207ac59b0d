package llm

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// Errors a Client's calls wrap; test with errors.Is. The error text around
// them names the server and says what to do.
var (
	// ErrUnsupported: the operation needs Lemonade's management API, and the
	// client talks to a plain OpenAI-compatible server.
	ErrUnsupported = errors.New("only with backend: lemonade")
	// ErrUnreachable: the server could not be reached (connection refused,
	// unknown host, no answer to the connection in time).
	ErrUnreachable = errors.New("LLM server unreachable")
	// ErrUnauthorized: the server answered 401 or 403.
	ErrUnauthorized = errors.New("the LLM server refused the key")
)

// APIError is an error answer from the server, whatever of Lemonade's three
// error shapes it came in: {"error":{"message","type","code"}},
// {"error":"text"} (with an optional top-level "code"), or
// {"status":"error","message":"text"}. OpenAI-compatible servers' shapes
// (vLLM's top-level "message", llama-server's numeric "code") parse too.
type APIError struct {
	Status  int // HTTP status; 0 for an error event inside a stream
	Message string
	Type    string // e.g. model_not_loaded, not_found
	Code    string // e.g. model_not_found, unknown_model
}

func (e *APIError) Error() string {
	msg := strings.Join(strings.Fields(e.Message), " ")
	if len(msg) > 600 {
		msg = msg[:600] + "…"
	}
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if msg == "" {
		msg = "error"
	}
	var tag []string
	if e.Status != 0 {
		tag = append(tag, strconv.Itoa(e.Status))
	}
	if e.Code != "" {
		tag = append(tag, e.Code)
	} else if e.Type != "" {
		tag = append(tag, e.Type)
	}
	if len(tag) == 0 {
		return "LLM server: " + msg
	}
	return "LLM server: " + msg + " (" + strings.Join(tag, " ") + ")"
}

// parseAPIError reads an error body in any of the known shapes. A body that
// is not JSON becomes the message (trimmed), so nothing the server said is
// lost.
func parseAPIError(status int, body []byte) *APIError {
	e := &APIError{Status: status}
	var raw struct {
		Error   json.RawMessage `json:"error"`
		Code    lstr            `json:"code"`
		Type    lstr            `json:"type"`
		Status  lstr            `json:"status"`
		Message lstr            `json:"message"`
		Detail  lstr            `json:"detail"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		e.Message = bodySnippet(body)
		return e
	}
	e.Code, e.Type = string(raw.Code), string(raw.Type)
	switch t := strings.TrimSpace(string(raw.Error)); {
	case strings.HasPrefix(t, "{"):
		var inner struct {
			Message lstr `json:"message"`
			Type    lstr `json:"type"`
			Code    lstr `json:"code"`
		}
		_ = json.Unmarshal(raw.Error, &inner)
		e.Message = string(inner.Message)
		if inner.Type != "" {
			e.Type = string(inner.Type)
		}
		if inner.Code != "" {
			e.Code = string(inner.Code)
		}
	case strings.HasPrefix(t, `"`):
		var s string
		_ = json.Unmarshal(raw.Error, &s)
		e.Message = s
	}
	if e.Message == "" {
		e.Message = string(raw.Message)
	}
	if e.Message == "" {
		e.Message = string(raw.Detail)
	}
	if e.Message == "" && len(raw.Error) == 0 {
		e.Message = bodySnippet(body)
	}
	return e
}

// streamError is the data of an SSE "error" event: {"error":"…","code":"…"}
// or the OpenAI object form.
func streamError(data []byte) *APIError {
	e := parseAPIError(0, data)
	if e.Message == "" {
		e.Message = "the server reported an error"
	}
	return e
}

func bodySnippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// wrapErr is an error with its own text that still matches every error it
// wraps (errors.Is / errors.As).
type wrapErr struct {
	msg  string
	errs []error
}

func (w *wrapErr) Error() string   { return w.msg }
func (w *wrapErr) Unwrap() []error { return w.errs }

// lstr is a lenient string: a JSON string, or a number or bool taken as its
// text; null and anything else leave it empty.
type lstr string

func (s *lstr) UnmarshalJSON(b []byte) error {
	t := strings.TrimSpace(string(b))
	switch {
	case strings.HasPrefix(t, `"`):
		var v string
		if json.Unmarshal(b, &v) == nil {
			*s = lstr(v)
		}
	case t == "null", strings.HasPrefix(t, "{"), strings.HasPrefix(t, "["):
	default:
		*s = lstr(t)
	}
	return nil
}

// lnum is a lenient number: an integer or a float, a numeric string, or a
// bool (1/0); null and anything else leave it zero.
type lnum float64

func (n *lnum) UnmarshalJSON(b []byte) error {
	t := strings.Trim(strings.TrimSpace(string(b)), `"`)
	switch t {
	case "true":
		*n = 1
	case "false", "null", "":
	default:
		if f, err := strconv.ParseFloat(t, 64); err == nil {
			*n = lnum(f)
		}
	}
	return nil
}

// lbool is a lenient bool: true/false, a number (non-zero is true), or the
// strings "true"/"1".
type lbool bool

func (v *lbool) UnmarshalJSON(b []byte) error {
	t := strings.Trim(strings.TrimSpace(string(b)), `"`)
	switch t {
	case "true", "1":
		*v = true
	case "false", "0", "null", "":
		*v = false
	default:
		if f, err := strconv.ParseFloat(t, 64); err == nil {
			*v = f != 0
		}
	}
	return nil
}
