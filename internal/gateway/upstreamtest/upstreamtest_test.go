package upstreamtest

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func events(t *testing.T, r io.Reader) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(r)
	done := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		d, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		if d == "[DONE]" {
			done = true
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(d), &m); err != nil {
			t.Fatalf("chunk %q: %v", d, err)
		}
		out = append(out, m)
	}
	if !done {
		t.Fatal("stream did not end with data: [DONE]")
	}
	return out
}

// The server speaks OpenAI's wire format: usage in JSON answers; in streams
// only when asked for, as a last chunk with empty choices; errors shaped.
func TestWireFormat(t *testing.T) {
	s := New(Options{PromptTokens: 2, CompletionTokens: 3, Models: []string{"m"}})
	defer s.Close()

	resp := post(t, s.URL+"/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":2}`)
	var c struct {
		Object string
		Usage  usage
	}
	json.NewDecoder(resp.Body).Decode(&c)
	if c.Object != "chat.completion" || c.Usage.PromptTokens != 2 || c.Usage.CompletionTokens != 2 {
		t.Errorf("completion %+v (max_tokens caps the completion)", c)
	}

	resp = post(t, s.URL+"/chat/completions", `{"model":"m","messages":[],"stream":true}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	evs := events(t, resp.Body)
	if len(evs) != 5 { // role, 3 tokens, finish
		t.Errorf("%d chunks", len(evs))
	}
	for _, e := range evs {
		if _, has := e["usage"]; has {
			t.Errorf("usage field without include_usage: %v", e)
		}
	}

	resp = post(t, s.URL+"/completions", `{"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":true}}`)
	evs = events(t, resp.Body)
	last := evs[len(evs)-1]
	if u, _ := last["usage"].(map[string]any); u == nil || u["total_tokens"] != 5.0 || len(last["choices"].([]any)) != 0 {
		t.Errorf("last chunk %v", last)
	}
	for _, e := range evs[:len(evs)-1] {
		if v, has := e["usage"]; !has || v != nil {
			t.Errorf("chunk before the last: usage %v, want null", v)
		}
	}

	resp = post(t, s.URL+"/embeddings", `{"model":"m","input":["a","b","c"],"encoding_format":"base64"}`)
	var emb struct {
		Data  []struct{ Embedding string }
		Usage usage
	}
	json.NewDecoder(resp.Body).Decode(&emb)
	if len(emb.Data) != 3 || len(emb.Data[0].Embedding) == 0 || emb.Usage.PromptTokens != 6 {
		t.Errorf("embeddings %+v", emb)
	}

	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/chat/completions", `{"model":"nope","messages":[]}`, 404},
		{"/chat/completions", `{`, 400},
		{"/chat/completions", `{"model":"m"}`, 400},
		{"/nowhere", `{}`, 404},
	} {
		resp := post(t, s.URL+tc.path, tc.body)
		var e ErrorBody
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != tc.status || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s %s: %d %+v %v", tc.path, tc.body, resp.StatusCode, e, err)
		}
	}
	if s.Completed() != 4 {
		t.Errorf("completed %d", s.Completed())
	}
}
