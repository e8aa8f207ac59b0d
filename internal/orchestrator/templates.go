package orchestrator

import (
	"context"

	"github.com/thon-dev/thon/internal/config"
)

// TemplateInfo is one template as organizers see it: what it sets, the
// settings its sandboxes get (over sandbox:), and who uses it.
type TemplateInfo struct {
	Template config.Template
	// Settings are what a sandbox made from the template gets (a group may
	// still override the idle policy).
	Settings config.Sandbox
	// Groups are the groups that name the template, by name.
	Groups []string
	// Participants is how many participants those groups hold; Outdated,
	// how many of their sandboxes were made from other settings.
	Participants, Outdated int
}

// Templates lists the templates in declaration order, with the groups that
// use them and how many of their sandboxes are outdated.
func (o *Orchestrator) Templates(ctx context.Context) ([]TemplateInfo, error) {
	set := o.Sandboxes()
	list, err := o.List(ctx, Filter{})
	if err != nil {
		return nil, err
	}
	out := make([]TemplateInfo, 0, len(set.Templates))
	for _, t := range set.Templates {
		ti := TemplateInfo{Template: t, Settings: t.Apply(set.Base), Groups: set.Uses(t.Name)}
		for _, s := range list {
			if s.Template != t.Name {
				continue
			}
			ti.Participants++
			if s.Outdated {
				ti.Outdated++
			}
		}
		out = append(out, ti)
	}
	return out, nil
}
