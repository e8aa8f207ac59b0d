package config

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// YAML writes the configuration as thon.yaml text, groups in the short list
// form (`alpha: [alice, bob]`). Parse reads it back to an equal Config.
func (c *Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// MarshalYAML writes groups as a mapping of group name to a flow list of
// users, in order; a group with a title, e-mails, a template or an idle
// policy in the mapping form ({title: …, template: node, users: [alice]}),
// a user with an e-mail as {name, email}.
func (gs Groups) MarshalYAML() (any, error) {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, g := range gs {
		users := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for _, u := range g.Users {
			if e, ok := g.Emails[u]; ok {
				users.Content = append(users.Content, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle,
					Content: []*yaml.Node{strNode("name"), strNode(u), strNode("email"), strNode(e)}})
				continue
			}
			users.Content = append(users.Content, strNode(u))
		}
		if g.Title == "" && len(g.Emails) == 0 && g.Template == "" && g.IdlePolicy.IsZero() {
			m.Content = append(m.Content, strNode(g.Name), users)
			continue
		}
		if len(g.Emails) > 0 {
			users.Style = 0 // one participant a line
		}
		body := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if g.Title != "" {
			body.Content = append(body.Content, strNode("title"), strNode(g.Title))
		}
		if g.Template != "" {
			body.Content = append(body.Content, strNode("template"), strNode(g.Template))
		}
		if p := g.IdleTimeout; p != nil {
			body.Content = append(body.Content, strNode("idle_timeout"), strNode(p.String()))
		}
		if p := g.IdleAction; p != nil {
			body.Content = append(body.Content, strNode("idle_action"), strNode(*p))
		}
		if p := g.MaxLifetime; p != nil {
			body.Content = append(body.Content, strNode("max_lifetime"), strNode(p.String()))
		}
		body.Content = append(body.Content, strNode("users"), users)
		m.Content = append(m.Content, strNode(g.Name), body)
	}
	return m, nil
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// UnmarshalYAML reads groups in either form Parse accepts. Only the shape is
// checked here; names are checked by Validate.
func (gs *Groups) UnmarshalYAML(n *yaml.Node) error {
	d := &decoder{pos: map[string]position{}}
	n = deref(n)
	if isNull(n) {
		*gs = nil
		return nil
	}
	d.decodeGroups(n, gs)
	return asError(d.problems)
}

// groupJSON is a group on the wire; Users is never null.
type groupJSON struct {
	Name     string            `json:"name"`
	Title    string            `json:"title,omitempty"`
	Users    []string          `json:"users"`
	Emails   map[string]string `json:"emails,omitempty"`
	Template string            `json:"template,omitempty"`
	IdlePolicy
}

// MarshalJSON writes groups as an array of {"name", "title", "users",
// "emails"} objects, in order; no groups is [] and a group without users
// has "users": [].
func (gs Groups) MarshalJSON() ([]byte, error) {
	out := make([]groupJSON, len(gs))
	for i, g := range gs {
		out[i] = groupJSON(g)
		if out[i].Users == nil {
			out[i].Users = []string{}
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads an array of {"name", "title", "users", "emails"} objects.
func (gs *Groups) UnmarshalJSON(b []byte) error {
	var in []groupJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("groups: want an array of {\"name\": …, \"users\": […]} objects: %w", err)
	}
	if in == nil {
		*gs = nil
		return nil
	}
	out := make(Groups, len(in))
	for i, g := range in {
		out[i] = Group(g)
	}
	*gs = out
	return nil
}

// UserEntry is one participant and the group they are in.
type UserEntry struct {
	Name  string `json:"name"`
	Group string `json:"group"`
	Email string `json:"email,omitempty"`
}

// Users lists every user with their group, in declaration order.
func (c *Config) Users() []UserEntry {
	var out []UserEntry
	for _, g := range c.Groups {
		for _, u := range g.Users {
			out = append(out, UserEntry{Name: u, Group: g.Name, Email: g.Emails[u]})
		}
	}
	return out
}
