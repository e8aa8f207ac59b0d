// Package people reads who takes part: attendee lists (CSV, as event
// platforms export them, or thon.yaml's groups in YAML), and turns names
// into valid THON user names.
package people

import (
	"encoding/csv"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/thon-dev/thon/internal/config"
)

var (
	invalidName = regexp.MustCompile(`[^a-z0-9-]+`)
	lineRefRE   = regexp.MustCompile(`line \d+`)
	// yamlKeyRE is the first line of YAML ("groups:", "alpha: [a, b]").
	yamlKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+:(\s|$)`)
)

// NameFrom turns a person's name or e-mail into a valid THON user name:
// "Ada Lovelace" → ada-lovelace, "ada@example.org" → ada.
func NameFrom(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if at := strings.IndexByte(s, '@'); at > 0 {
		s = s[:at]
	}
	s = strings.Trim(invalidName.ReplaceAllString(s, "-"), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

// Attendee is one person of an attendee list.
type Attendee struct {
	Name  string // a valid THON user name
	Group string
	Email string // "" when the list has none
}

// Groups gathers attendees by group, in the order groups first appear,
// with their e-mail addresses.
func Groups(as []Attendee) config.Groups {
	var out config.Groups
	index := map[string]int{}
	for _, a := range as {
		i, ok := index[a.Group]
		if !ok {
			i = len(out)
			index[a.Group] = i
			out = append(out, config.Group{Name: a.Group})
		}
		out[i].Users = append(out[i].Users, a.Name)
		if a.Email != "" {
			if out[i].Emails == nil {
				out[i].Emails = map[string]string{}
			}
			out[i].Emails[a.Name] = a.Email
		}
	}
	return out
}

// Parse reads participants from CSV or YAML. CSV: a header row naming the
// columns (name/username/user/first name+last name, email, group/team; an
// event platform's attendee export works) or rows of NAME[,GROUP[,EMAIL]].
// YAML: groups as in thon.yaml, with or without the "groups:" key. Rows
// without a group go to defaultGroup. Names become valid user names.
func Parse(data []byte, defaultGroup string) ([]Attendee, error) {
	text := strings.TrimPrefix(string(data), "\ufeff")
	first, _, _ := strings.Cut(strings.TrimSpace(text), "\n")
	if yamlKeyRE.MatchString(first) {
		gs, err := ParseGroupsYAML(text)
		if err != nil {
			return nil, err
		}
		var out []Attendee
		for _, g := range gs {
			for _, u := range g.Users {
				out = append(out, Attendee{Name: u, Group: g.Name, Email: g.Emails[u]})
			}
		}
		return out, nil
	}
	rd := csv.NewReader(strings.NewReader(text))
	rd.FieldsPerRecord = -1
	rd.TrimLeadingSpace = true
	if strings.Count(first, ";") > strings.Count(first, ",") {
		rd.Comma = ';'
	}
	rows, err := rd.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("not a CSV file: %v", err)
	}
	col := map[string]int{"name": 0, "group": 1, "email": 2}
	if len(rows) > 0 && looksLikeHeader(rows[0]) {
		col = map[string]int{"name": -1, "first": -1, "last": -1, "group": -1, "email": -1}
		for i, h := range rows[0] {
			switch strings.ToLower(strings.TrimSpace(h)) {
			case "name", "username", "user", "login", "handle", "full name", "attendee name":
				col["name"] = i
			case "first name", "firstname", "given name":
				col["first"] = i
			case "last name", "lastname", "surname", "family name":
				col["last"] = i
			case "group", "team", "track", "room":
				col["group"] = i
			case "email", "e-mail", "email address", "attendee email":
				col["email"] = i
			}
		}
		if col["name"] < 0 && col["first"] < 0 && col["email"] < 0 {
			return nil, fmt.Errorf("the header %q has no name, first name or email column", strings.Join(rows[0], ","))
		}
		rows = rows[1:]
	}
	cell := func(r []string, c string) string {
		if i, ok := col[c]; ok && i >= 0 && i < len(r) {
			return strings.TrimSpace(r[i])
		}
		return ""
	}
	var out []Attendee
	seen := map[string]int{}
	for n, r := range rows {
		raw := cell(r, "name")
		if raw == "" {
			raw = strings.TrimSpace(cell(r, "first") + " " + cell(r, "last"))
		}
		if raw == "" {
			raw = cell(r, "email")
		}
		if raw == "" {
			continue
		}
		user := NameFrom(raw)
		if err := config.ValidName("user", user); err != nil {
			return nil, fmt.Errorf("row %d: %q gives no valid user name: %v", n+1, raw, err)
		}
		group := NameFrom(cell(r, "group"))
		if group == "" {
			group = defaultGroup
		}
		if err := config.ValidName("group", group); err != nil {
			return nil, fmt.Errorf("row %d (%s): no group: add a group column or choose a group for the rows without one", n+1, user)
		}
		if prev, dup := seen[user]; dup {
			return nil, fmt.Errorf("row %d: %s is also on row %d: two people with one user name; give one another name", n+1, user, prev)
		}
		seen[user] = n + 1
		email := cell(r, "email")
		if email != "" {
			if why := config.CheckEmail(email); why != "" {
				return nil, fmt.Errorf("row %d (%s): the e-mail %q %s: fix it or leave the cell empty", n+1, user, email, why)
			}
		}
		out = append(out, Attendee{Name: user, Group: group, Email: email})
	}
	if len(out) == 0 {
		return nil, errors.New("no participants found")
	}
	return out, nil
}

func looksLikeHeader(r []string) bool {
	for _, h := range r {
		switch strings.ToLower(strings.TrimSpace(h)) {
		case "name", "username", "user", "email", "e-mail", "group", "team", "first name", "last name", "full name":
			return true
		}
	}
	return false
}

// ParseGroupsYAML reads thon.yaml's groups section, with or without its
// "groups:" line; problems are at the lines of the text given.
func ParseGroupsYAML(text string) (config.Groups, error) {
	var probe map[string]any
	if err := yaml.Unmarshal([]byte(text), &probe); err != nil {
		return nil, fmt.Errorf("not YAML: %v", err)
	}
	shift := 0
	if _, ok := probe["groups"]; !ok {
		text, shift = "groups:\n"+indent(text), 1
	}
	c, err := config.Parse([]byte(text), "groups.yaml")
	var ve *config.ValidationError
	if errors.As(err, &ve) && shift > 0 {
		// Problems are at the lines of what was given, not of the wrapper.
		for i := range ve.Problems {
			if ve.Problems[i].Line > 0 {
				ve.Problems[i].Line -= shift
				ve.Problems[i].Col -= 2
			}
			ve.Problems[i].Msg = lineRefRE.ReplaceAllStringFunc(ve.Problems[i].Msg, func(m string) string {
				n, _ := strconv.Atoi(strings.TrimPrefix(m, "line "))
				return "line " + strconv.Itoa(n-shift)
			})
		}
	}
	if err != nil {
		return nil, err
	}
	return c.Groups, nil
}

func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n")
}
