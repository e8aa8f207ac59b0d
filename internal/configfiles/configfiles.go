// Package configfiles is the configuration files THON keeps in its
// database, beside thon.yaml: organizers edit them on the dashboard, with
// `thon files` or through the API, and each is checked before it is kept.
// Stored assistant files stand in for the files thon.yaml names
// (llm.StoredKinds) and reach sandboxes created from then on; a stored
// groups-yaml waits to be imported.
package configfiles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/jsonc"
	"github.com/thon-dev/thon/internal/people"
	"github.com/thon-dev/thon/internal/store"
)

// Kinds are the files THON keeps; a file's name is its kind.
var Kinds = []string{"groups-yaml", "kilo-base", "continue-base", "cline-base", "opencode-base", "vscode-settings", "extensions"}

// MaxSize bounds one file.
const MaxSize = 2 << 20

// Problem is what is wrong in a file, at its line (0: the whole file).
type Problem struct {
	Line int    `json:"line,omitempty"`
	Msg  string `json:"msg"`
}

// InvalidError is a file that was not kept, and why.
type InvalidError struct {
	Name     string
	Problems []Problem
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s was not saved: %d problem(s)", e.Name, len(e.Problems))
	for _, p := range e.Problems {
		if p.Line > 0 {
			fmt.Fprintf(&b, "; line %d: %s", p.Line, p.Msg)
		} else {
			b.WriteString("; " + p.Msg)
		}
	}
	return b.String()
}

var lineRE = regexp.MustCompile(`line (\d+)`)

// Check validates the content of a file of a kind, and says where each
// problem is.
func Check(kind string, content []byte) []Problem {
	var ps []Problem
	add := func(err error) {
		if err == nil {
			return
		}
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			for _, p := range ve.Problems {
				msg := p.Msg
				if p.Hint != "" {
					msg += " (" + p.Hint + ")"
				}
				ps = append(ps, Problem{Line: p.Line, Msg: msg})
			}
			return
		}
		line := 0
		if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		ps = append(ps, Problem{Line: line, Msg: err.Error()})
	}
	if len(content) > MaxSize {
		return []Problem{{Msg: fmt.Sprintf("the file has %d bytes; at most %d are kept", len(content), MaxSize)}}
	}
	switch kind {
	case "groups-yaml":
		_, err := people.ParseGroupsYAML(string(content))
		add(err)
	case "kilo-base", "cline-base", "opencode-base", "vscode-settings":
		_, err := jsonc.Object(content)
		add(err)
	case "continue-base":
		var m map[string]any
		add(yaml.Unmarshal(content, &m))
	case "extensions":
		_, err := config.ParseExtensions(content)
		add(err)
	default:
		ps = append(ps, Problem{Msg: fmt.Sprintf("unknown kind %q: use one of %s", kind, strings.Join(Kinds, ", "))})
	}
	return ps
}

// Service keeps the files.
type Service struct {
	st  *store.Store
	log *slog.Logger
	// changed applies the stored files again (the assistants' files for
	// new sandboxes); nil: nothing to apply.
	changed func() error
}

// New serves the files of st; changed runs after a save or delete of an
// assistant file.
func New(st *store.Store, changed func() error, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, changed: changed, log: log}
}

// List is every stored file, without content.
func (s *Service) List(ctx context.Context) ([]store.ConfigFile, error) {
	fs, err := s.st.ConfigFiles(ctx)
	if fs == nil {
		fs = []store.ConfigFile{}
	}
	return fs, err
}

// Get is one file with its content.
func (s *Service) Get(ctx context.Context, name string) (store.ConfigFile, error) {
	if !slices.Contains(Kinds, name) {
		return store.ConfigFile{}, unknown(name)
	}
	return s.st.ConfigFile(ctx, name)
}

func unknown(name string) error {
	return &InvalidError{Name: name, Problems: []Problem{{Msg: fmt.Sprintf("unknown file %q: use one of %s", name, strings.Join(Kinds, ", "))}}}
}

// Put checks and keeps a file; an *InvalidError keeps nothing. Effect says
// what saving it means for the event.
func (s *Service) Put(ctx context.Context, actor, name string, content []byte) (effect string, err error) {
	if ps := Check(name, content); len(ps) > 0 {
		return "", &InvalidError{Name: name, Problems: ps}
	}
	if err := s.st.PutConfigFile(ctx, store.ConfigFile{Name: name, Kind: name, Content: string(content), UpdatedBy: actor}); err != nil {
		return "", err
	}
	s.audit(ctx, actor, "config.file.save", name, strconv.Itoa(len(content))+" bytes")
	return s.apply(name), nil
}

// Delete removes a file; thon.yaml's file (if any) applies again.
func (s *Service) Delete(ctx context.Context, actor, name string) (effect string, err error) {
	if !slices.Contains(Kinds, name) {
		return "", unknown(name)
	}
	if err := s.st.DeleteConfigFile(ctx, name); err != nil {
		return "", err
	}
	s.audit(ctx, actor, "config.file.delete", name, "")
	return s.apply(name), nil
}

// apply makes a change take effect and says what that means.
func (s *Service) apply(name string) string {
	if name == "groups-yaml" {
		return "Import it when you are ready (the dashboard's Groups page, or thon users import)."
	}
	if s.changed == nil {
		return ""
	}
	if err := s.changed(); err != nil {
		s.log.Error("apply stored files", "err", err)
		return "It could not be applied: " + err.Error()
	}
	return "New sandboxes get it; running ones show as outdated until recreated."
}

func (s *Service) audit(ctx context.Context, actor, action, target, detail string) {
	if _, err := s.st.AddEvent(context.WithoutCancel(ctx), actor, action, target, detail); err != nil {
		s.log.Warn("audit log", "action", action, "err", err)
	}
}
