package dashboard

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/thon-dev/thon/internal/configfiles"
	"github.com/thon-dev/thon/internal/orchestrator"
	"github.com/thon-dev/thon/internal/people"
	"github.com/thon-dev/thon/internal/store"
)

const maxForm = 2 << 20 // uploads and forms: 2 MiB

// card is one participant's printable access card.
type card struct {
	User, Group, URL, Link string
	Email                  string       // thon.yaml's, "" when none
	QR                     template.URL // data: URL of a PNG
	Expires                string
}

// cards issues fresh access links for a group and lays them out to print.
func (d *Dashboard) cards(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	group := r.PostFormValue("group")
	g, err := d.o.Store.Group(ctx, group)
	if err != nil {
		http.Error(w, "no such group: "+group, http.StatusNotFound)
		return
	}
	title := group
	if g.Title != "" {
		title = g.Title
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
		cs = append(cs, card{User: l.User, Group: title, Email: l.Email, URL: l.URL, Link: l.Link, Expires: l.Expires.Local().Format("Mon 2 Jan 15:04"),
			QR: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))})
	}
	d.render(w, r, http.StatusOK, "cards", pageData{Title: "Access cards: " + title, CSRF: sessionOf(r).CSRF, Data: cs})
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
		if f, err = d.o.Files.Get(r.Context(), "groups-yaml"); err == nil {
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

// saveFile stores a configuration file after checking it; problems are
// shown at their line in the editor, and nothing is stored.
func (d *Dashboard) saveFile(w http.ResponseWriter, r *http.Request) {
	content, err := formText(r, "content", "upload")
	kind := r.PostFormValue("kind")
	var effect string
	if err == nil {
		effect, err = d.o.Files.Put(r.Context(), sessionOf(r).Actor, kind, content)
	}
	var invalid *configfiles.InvalidError
	switch {
	case errors.As(err, &invalid):
		data, derr := d.settingsData(r, store.ConfigFile{Name: kind, Kind: kind, Content: string(content)})
		if derr != nil {
			d.o.Logger.Error("settings page", "err", derr)
		}
		data.Errors = invalid.Problems
		d.render(w, r, http.StatusUnprocessableEntity, "settings", pageData{Title: "Settings", Nav: "/settings", CSRF: sessionOf(r).CSRF, Data: data,
			Error: fmt.Sprintf("%s was not saved: %d problem(s), shown below at their lines.", kind, len(invalid.Problems))})
	case err != nil:
		redirectFlash(w, r, "/settings", "save: "+err.Error())
	default:
		redirectFlash(w, r, "/settings", strings.TrimSpace(kind+" saved. "+effect))
	}
}

func (d *Dashboard) deleteFile(w http.ResponseWriter, r *http.Request) {
	name := r.PostFormValue("name")
	effect, err := d.o.Files.Delete(r.Context(), sessionOf(r).Actor, name)
	if err != nil {
		redirectFlash(w, r, "/settings", "delete: "+err.Error())
		return
	}
	redirectFlash(w, r, "/settings", strings.TrimSpace(name+" deleted. "+effect))
}
