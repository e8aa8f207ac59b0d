package wizard

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/people"
)

// LLM choices.
const (
	LLMNone     = "none"
	LLMManaged  = "managed"  // llama.cpp run by THON, a GGUF file or THON's test model
	LLMLemonade = "lemonade" // Lemonade Server
	LLMLlama    = "llamacpp" // a llama-server of yours, at a URL
	LLMOpenAI   = "openai"   // any OpenAI-compatible server
)

// Certificate choices.
const (
	CertLocal = "local" // THON's local CA
	CertACME  = "acme"  // Let's Encrypt for the host names
)

// Answers are what the organizer chose.
type Answers struct {
	Event string // the event's name, at the top of the file

	// Participants: names or e-mails one a line, NAME[,GROUP[,EMAIL]]
	// rows, an attendee CSV with a header, or the path of such a file.
	Participants string
	// DefaultGroup holds who the list gives no group.
	DefaultGroup string
	// TeamSize splits DefaultGroup into teams of this many (0: one group).
	TeamSize int

	Mode       string   // port, path or subdomain
	Domain     string   // subdomain mode's
	ExternalIP string   // "" detects it at start
	Hostnames  []string // for the certificate
	HTTPSPort  int
	HTTPPort   int
	Cert       string // CertLocal or CertACME
	ACMEEmail  string

	LLM       string // LLMNone, LLMManaged, ...
	LLMURL    string // LLMLlama's and LLMOpenAI's
	ModelFile string // LLMManaged: a GGUF file ("" THON's test model)
	ModelName string // LLMOpenAI, LLMLlama: the model id to ask for

	Limits config.GatewayLimits // the gateway's, per key

	AdminPassword string // "" leaves it to THON_ADMIN_PASSWORD
}

// Defaults are the answers proposed from what Detect found.
func Defaults(d Detection) Answers {
	a := Answers{
		Event:        "My event",
		DefaultGroup: "team",
		Mode:         config.ModePort,
		ExternalIP:   d.ExternalIP,
		Hostnames:    d.Hostnames,
		HTTPSPort:    443,
		HTTPPort:     80,
		Cert:         CertLocal,
		LLM:          LLMManaged,
	}
	if p := d.PortFree(443); !p.Free {
		a.HTTPSPort = 8443
	}
	if p := d.PortFree(80); !p.Free {
		a.HTTPPort = 0
	}
	switch {
	case d.Lemonade != "":
		a.LLM, a.LLMURL = LLMLemonade, d.Lemonade
	case d.Llama != "":
		a.LLM, a.LLMURL = LLMLlama, d.Llama
	}
	a.Limits = SuggestedLimits(0)
	return a
}

// SuggestedLimits are the gateway's per-participant limits for n people
// sharing one LLM server: the default (2 requests at a time, 20k tokens a
// minute) up to 16 people; beyond, one request at a time and the tokens of
// a busy server (about 320k a minute) shared out, never under 4k.
func SuggestedLimits(n int) config.GatewayLimits {
	l := config.Default().Gateway.Limits
	if n > 16 {
		l.Concurrency = 1
		l.TokensPerMinute = max(4000, 320000/n/1000*1000)
	}
	return l
}

// Attendees reads a.Participants (a path is read from disk).
func (a Answers) Attendees() ([]people.Attendee, error) {
	text := strings.TrimSpace(a.Participants)
	if text == "" {
		return nil, fmt.Errorf("no participants: type their names (one a line), paste an attendee CSV, or give its path")
	}
	if !strings.Contains(text, "\n") && (strings.ContainsRune(text, os.PathSeparator) || strings.HasSuffix(strings.ToLower(text), ".csv")) {
		data, err := os.ReadFile(expandHome(text))
		if err != nil {
			return nil, fmt.Errorf("the attendee list: %v", err)
		}
		text = string(data)
	}
	group := a.DefaultGroup
	if group == "" {
		group = "team"
	}
	as, err := plainList(text, group)
	if as == nil && err == nil {
		as, err = people.Parse([]byte(text), group)
	}
	if err != nil {
		return nil, err
	}
	if len(as) == 0 {
		return nil, fmt.Errorf("the list names nobody")
	}
	if a.TeamSize > 0 {
		n := 0
		for i := range as {
			if as[i].Group == group {
				as[i].Group = group + "-" + strconv.Itoa(n/a.TeamSize+1)
				n++
			}
		}
	}
	return as, nil
}

// plainList reads names or addresses one a line ("Ada Lovelace",
// "ada@example.org", "Ada Lovelace <ada@example.org>"); nil when text is
// not such a list (CSV rows, YAML).
func plainList(text, group string) ([]people.Attendee, error) {
	if strings.Contains(text, ",") || strings.Contains(text, ":") {
		return nil, nil
	}
	var as []people.Attendee
	seen := map[string]int{}
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		name, email := l, ""
		if lt := strings.IndexByte(l, '<'); lt >= 0 && strings.HasSuffix(l, ">") {
			name, email = strings.TrimSpace(l[:lt]), strings.TrimSpace(l[lt+1:len(l)-1])
		} else if strings.Contains(l, "@") {
			email = l
		}
		if name == "" {
			name = email
		}
		n := people.NameFrom(name)
		if n == "" {
			return nil, fmt.Errorf("line %d: %q makes no user name (letters a-z and digits)", i+1, l)
		}
		if j, dup := seen[n]; dup {
			return nil, fmt.Errorf("line %d: %q is user %s again (line %d): give one of them another name", i+1, l, n, j)
		}
		seen[n] = i + 1
		as = append(as, people.Attendee{Name: n, Group: group, Email: email})
	}
	return as, nil
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, rest)
		}
	}
	return p
}

// Render writes the answers into the commented starter thon.yaml and
// checks the result as THON will read it.
func Render(a Answers) ([]byte, *config.Config, error) {
	as, err := a.Attendees()
	if err != nil {
		return nil, nil, err
	}
	data := config.Starter()
	header := "# thon.yaml: the configuration of a THON event."
	if !bytes.HasPrefix(data, []byte(header)) {
		return nil, nil, fmt.Errorf("the starter file changed: update the wizard")
	}
	event := strings.ReplaceAll(strings.TrimSpace(a.Event), "\n", " ")
	if event == "" {
		event = "a THON event"
	}
	data = append([]byte("# thon.yaml of "+event+", written by thon init."), data[len(header):]...)

	// The participants replace the demo groups.
	at := bytes.Index(data, []byte("# Participants, by group."))
	if at < 0 {
		return nil, nil, fmt.Errorf("the starter file has no groups: update the wizard")
	}
	groups, err := yaml.Marshal(map[string]config.Groups{"groups": people.Groups(as)})
	if err != nil {
		return nil, nil, err
	}
	data = append(data[:at:at], []byte(`# Participants, by group. Names use lowercase letters a-z, digits and "-"
# (at most 63 characters); a user is in exactly one group: a list of
# users, or {title, users} with users as {name, email}.
`)...)
	data = append(data, groups...)

	set := [][2]string{
		{"access.mode", a.Mode},
		{"access.external_ip", a.ExternalIP},
	}
	if a.Mode == config.ModeSubdomain {
		set = append(set, [2]string{"access.domain", a.Domain})
	}
	if a.Cert == CertACME {
		set = append(set, [2]string{"access.acme.email", a.ACMEEmail})
	}
	switch a.LLM {
	case LLMNone:
		set = append(set, [2]string{"llm.enabled", "false"}, [2]string{"gateway.enabled", "false"})
	case LLMManaged:
		set = append(set, [2]string{"llm.backend", config.BackendLlamacpp}, [2]string{"llm.managed", "true"})
		if a.ModelFile != "" {
			name := strings.TrimSuffix(filepath.Base(a.ModelFile), filepath.Ext(a.ModelFile))
			set = append(set, [2]string{"llm.chat_model.file", expandHome(a.ModelFile)},
				[2]string{"llm.chat_model.checkpoint", ""}, [2]string{"llm.chat_model.name", people.NameFrom(name)})
		} else {
			set = append(set, [2]string{"llm.chat_model.checkpoint", ""}, [2]string{"llm.chat_model.name", "thon-test"})
		}
	case LLMLemonade:
		set = append(set, [2]string{"llm.backend", config.BackendLemonade})
		if a.LLMURL != "" && a.LLMURL != config.DefaultLLMURL {
			set = append(set, [2]string{"llm.url", a.LLMURL})
		}
	case LLMLlama, LLMOpenAI:
		set = append(set, [2]string{"llm.backend", a.LLM}, [2]string{"llm.url", a.LLMURL},
			[2]string{"llm.chat_model.checkpoint", ""})
		if a.ModelName != "" {
			set = append(set, [2]string{"llm.chat_model.name", a.ModelName})
		}
	default:
		return nil, nil, fmt.Errorf("unknown LLM choice %q", a.LLM)
	}
	if a.LLM != LLMNone {
		set = append(set,
			[2]string{"gateway.limits.requests_per_minute", strconv.Itoa(a.Limits.RequestsPerMinute)},
			[2]string{"gateway.limits.concurrency", strconv.Itoa(a.Limits.Concurrency)},
			[2]string{"gateway.limits.tokens_per_minute", strconv.Itoa(a.Limits.TokensPerMinute)})
	}
	if a.AdminPassword != "" {
		set = append(set, [2]string{"auth.admin_password", a.AdminPassword})
	}
	if data, err = config.SetScalars(data, set); err != nil {
		return nil, nil, err
	}
	// Numbers and lists are written as YAML reads them.
	for _, r := range []struct{ from, to string }{
		{"  https_port: 443\n", "  https_port: " + strconv.Itoa(a.HTTPSPort) + "\n"},
		{"  http_port: 80\n", "  http_port: " + strconv.Itoa(a.HTTPPort) + "\n"},
		{"  hostnames: []\n", "  hostnames: " + flowList(a.Hostnames) + "\n"},
	} {
		if !bytes.Contains(data, []byte(r.from)) {
			return nil, nil, fmt.Errorf("the starter file has no %q: update the wizard", strings.TrimSpace(r.from))
		}
		data = bytes.Replace(data, []byte(r.from), []byte(r.to), 1)
	}
	c, err := config.Parse(data, "thon.yaml")
	if err != nil {
		return nil, nil, err
	}
	return data, c, nil
}

func flowList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// groupCount is how many groups the attendees make.
func groupCount(as []people.Attendee) int {
	m := map[string]bool{}
	for _, a := range as {
		m[a.Group] = true
	}
	return len(m)
}
