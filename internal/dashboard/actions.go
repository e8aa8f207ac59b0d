package dashboard

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/jsonc"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/people"
	"github.com/thon-dev/thon/internal/store"
)

const maxForm = 2 << 20 // uploads and forms: 2 MiB

// card is one participant's printable access card.
type card struct {
	User, Group, URL, Link string
	QR                     template.URL // data: URL of a PNG
	Expires                string
}

// cards issues fresh access links for a group and lays them out to print.
func (d *Dashboard) cards(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	group := r.PostFormValue("group")
	if _, err := d.o.Store.Group(ctx, group); err != nil {
		http.Error(w, "no such group: "+group, http.StatusNotFound)
		return
	}
	links, err := d.o.Access.IssueLinks(ctx, sessionOf(r).Actor, orchestrator.Filter{Groups: []string{group}})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var cs []card
	for _, l := range links {
		png, err := qrcode.Encode(l.Link, qrcode.Medium, 256)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		cs = append(cs, card{User: l.User, Group: l.Group, URL: l.URL, Link: l.Link, Expires: l.Expires.Local().Format("Mon 2 Jan 15:04"),
			QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))})
	}
	d.render(w, r, http.StatusOK, "cards", pageData{Title: "Access cards: " + group, CSRF: sessionOf(r).CSRF, Data: cs})
}

// qr draws the posted text as a QR code (an access link on the screen).
func (d *Dashboard) qr(w http.ResponseWriter, r *http.Request) {
	text := r.PostFormValue("text")
	if text == "" || len(text) > 2048 {
		http.Error(w, "send text= (at most 2048 bytes)", http.StatusBadRequest)
		return
	}
	png, err := qrcode.Encode(text, qrcode.Medium, 320)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(png)
}

// importUsers adds participants from a CSV (an event platform's attendee
// export works: a name or e-mail column, an optional group column) or from
// thon.yaml's groups section.
func (d *Dashboard) importUsers(w http.ResponseWriter, r *http.Request) {
	text, err := formText(r, "data", "file")
	if r.PostFormValue("stored") == "groups-yaml" {
		var f store.ConfigFile
		if f, err = d.o.Store.ConfigFile(r.Context(), "groups-yaml"); err == nil {
			text = []byte(f.Content)
		}
	}
	if err != nil {
		redirectFlash(w, r, "/groups", "import: "+err.Error())
		return
	}
	attendees, err := people.Parse(text, r.PostFormValue("group"))
	if err != nil {
		redirectFlash(w, r, "/groups", "import: "+err.Error())
		return
	}
	res, err := d.o.Orch.ImportPeople(r.Context(), sessionOf(r).Actor, people.Groups(attendees))
	if err != nil {
		redirectFlash(w, r, "/groups", "import: "+err.Error())
		return
	}
	redirectFlash(w, r, "/groups", fmt.Sprintf("Imported: %d participants added, %d moved, %d groups added. Start them from the Instances page.",
		len(res.UsersAdded), len(res.UsersMoved), len(res.GroupsAdded)))
}

// formText is a form's text field, or the file uploaded instead.
func formText(r *http.Request, field, file string) ([]byte, error) {
	r.Body = http.MaxBytesReader(nil, r.Body, maxForm)
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
		if err := r.ParseMultipartForm(maxForm); err != nil {
			return nil, fmt.Errorf("the upload is too large or broken: %v", err)
		}
		if f, _, err := r.FormFile(file); err == nil {
			defer f.Close()
			b, err := io.ReadAll(f)
			if err != nil {
				return nil, err
			}
			if len(bytes.TrimSpace(b)) > 0 {
				return b, nil
			}
		}
	}
	b := []byte(r.PostFormValue(field))
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("nothing to import: paste the list or choose a file")
	}
	return b, nil
}

func redirectFlash(w http.ResponseWriter, r *http.Request, path, msg string) {
	http.Redirect(w, r, path+"?flash="+url.QueryEscape(msg), http.StatusSeeOther)
}

// FileKinds are the configuration files the dashboard keeps.
var FileKinds = []string{"groups-yaml", "kilo-base", "continue-base", "cline-base", "vscode-settings", "extensions"}

// fileError is a problem in a stored file, at its line (0: the whole file).
type fileError struct {
	Line int
	Msg  string
}

var (
	lineRE = regexp.MustCompile(`line (\d+)`)
)

// CheckFile validates a configuration file of a kind, and says where each
// problem is.
func CheckFile(kind string, content []byte) []fileError {
	var errs []fileError
	add := func(err error) {
		if err == nil {
			return
		}
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			for _, p := range ve.Problems {
				errs = append(errs, fileError{Line: p.Line, Msg: p.Msg + hintOf(p.Hint)})
			}
			return
		}
		line := 0
		if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		errs = append(errs, fileError{Line: line, Msg: err.Error()})
	}
	switch kind {
	case "groups-yaml":
		_, err := people.ParseGroupsYAML(string(content))
		add(err)
	case "kilo-base", "cline-base", "vscode-settings":
		_, err := jsonc.Object(content)
		add(err)
	case "continue-base":
		var m map[string]any
		add(yaml.Unmarshal(content, &m))
	case "extensions":
		_, err := config.ParseExtensions(content)
		add(err)
	default:
		errs = append(errs, fileError{Msg: fmt.Sprintf("unknown kind %q: use one of %s", kind, strings.Join(FileKinds, ", "))})
	}
	return errs
}

func hintOf(h string) string {
	if h == "" {
		return ""
	}
	return " (" + h + ")"
}

// saveFile stores a configuration file after checking it; problems are
// shown at their line in the editor, and nothing is stored.
func (d *Dashboard) saveFile(w http.ResponseWriter, r *http.Request) {
	content, err := formText(r, "content", "upload")
	kind := r.PostFormValue("kind")
	f := store.ConfigFile{Name: kind, Kind: kind, UpdatedBy: sessionOf(r).Actor}
	if err == nil {
		f.Content = string(content)
	}
	errs := CheckFile(kind, content)
	if err != nil {
		errs = append(errs, fileError{Msg: err.Error()})
	}
	if len(errs) > 0 || !slices.Contains(FileKinds, kind) {
		data, derr := d.settingsData(r, f)
		if derr != nil {
			d.o.Logger.Error("settings page", "err", derr)
		}
		data.Errors = errs
		d.render(w, r, http.StatusUnprocessableEntity, "settings", pageData{Title: "Settings", Nav: "/settings", CSRF: sessionOf(r).CSRF, Data: data,
			Error: fmt.Sprintf("%s was not saved: %d problem(s), shown below at their lines.", kind, len(errs))})
		return
	}
	if err := d.o.Store.PutConfigFile(r.Context(), f); err != nil {
		redirectFlash(w, r, "/settings", "save: "+err.Error())
		return
	}
	d.o.Store.AddEvent(context.WithoutCancel(r.Context()), f.UpdatedBy, "config.file.save", f.Name, strconv.Itoa(len(f.Content))+" bytes")
	redirectFlash(w, r, "/settings", kind+" saved."+d.filesChanged(kind))
}

// filesChanged applies stored files again and says what that means.
func (d *Dashboard) filesChanged(kind string) string {
	if kind == "groups-yaml" {
		return " Import it from the Groups page (\"Import the stored groups-yaml\") when you are ready."
	}
	if d.o.FilesChanged == nil {
		return ""
	}
	if err := d.o.FilesChanged(); err != nil {
		d.o.Logger.Error("apply stored files", "err", err)
		return " It could not be applied: " + err.Error()
	}
	return " New sandboxes get it; running ones show as outdated until recreated."
}

func (d *Dashboard) deleteFile(w http.ResponseWriter, r *http.Request) {
	name := r.PostFormValue("name")
	if err := d.o.Store.DeleteConfigFile(r.Context(), name); err != nil {
		redirectFlash(w, r, "/settings", "delete: "+err.Error())
		return
	}
	d.o.Store.AddEvent(context.WithoutCancel(r.Context()), sessionOf(r).Actor, "config.file.delete", name, "")
	redirectFlash(w, r, "/settings", name+" deleted."+d.filesChanged(name))
}
