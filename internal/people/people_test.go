package people

import (
	"reflect"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in, group string
		want            config.Groups
		err             string
	}{
		{"event platform export", "\ufeffFirst Name,Last Name,Email,Ticket Type,Team\nAda,Lovelace,ada@example.org,Student,Alpha\nAlan,Turing,alan@example.org,Pro,\n", "beta",
			config.Groups{{Name: "alpha", Users: []string{"ada-lovelace"}, Emails: map[string]string{"ada-lovelace": "ada@example.org"}},
				{Name: "beta", Users: []string{"alan-turing"}, Emails: map[string]string{"alan-turing": "alan@example.org"}}}, ""},
		{"one name per row", "alice\nbob\n", "alpha", config.Groups{{Name: "alpha", Users: []string{"alice", "bob"}}}, ""},
		{"name,group,email", "carol,beta,carol@example.org\ndave,alpha\n", "", config.Groups{{Name: "beta", Users: []string{"carol"}, Emails: map[string]string{"carol": "carol@example.org"}}, {Name: "alpha", Users: []string{"dave"}}}, ""},
		{"emails only, semicolons", "email;group\nEve.Smith@example.org;gamma\n", "", config.Groups{{Name: "gamma", Users: []string{"eve-smith"}, Emails: map[string]string{"eve-smith": "Eve.Smith@example.org"}}}, ""},
		{"yaml groups section", "groups:\n  alpha: [alice]\n  beta: {users: [bob]}\n", "", config.Groups{{Name: "alpha", Users: []string{"alice"}}, {Name: "beta", Users: []string{"bob"}}}, ""},
		{"yaml without the key", "alpha: [alice, bob]\n", "", config.Groups{{Name: "alpha", Users: []string{"alice", "bob"}}}, ""},
		{"no group", "alice\n", "", nil, "row 1 (alice): no group"},
		{"two people, one name", "name\nAda L\nada-l\n", "alpha", nil, "row 2: ada-l is also on row 1"},
		{"header without names", "Order,Ticket Type,Team\n1,Student,alpha\n", "alpha", nil, "has no name, first name or email column"},
		{"bad yaml user", "alpha: [Alice]\n", "", nil, `invalid user name "Alice"`},
		{"empty", "name\n", "alpha", nil, "no participants found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as, err := Parse([]byte(tc.in), tc.group)
			got := Groups(as)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestNameFrom(t *testing.T) {
	for in, want := range map[string]string{
		"Ada Lovelace": "ada-lovelace", "ada@example.org": "ada", "  O'Brien, Pat ": "o-brien-pat",
		"José": "jos", strings.Repeat("x", 70): strings.Repeat("x", 63), "___": "",
	} {
		if got := NameFrom(in); got != want {
			t.Errorf("NameFrom(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseKeepsEmails(t *testing.T) {
	as, err := Parse([]byte("Name,Email,Team\nAda Lovelace,ada@example.org,alpha\nBob,,\n"), "beta")
	if err != nil {
		t.Fatal(err)
	}
	want := []Attendee{{"ada-lovelace", "alpha", "ada@example.org"}, {"bob", "beta", ""}}
	if !reflect.DeepEqual(as, want) {
		t.Fatalf("got %+v", as)
	}
	// The e-mails go into the groups imported (cards, invites, git identity).
	gs := Groups(as)
	if gs[0].Email("ada-lovelace") != "ada@example.org" || gs[1].Emails != nil {
		t.Errorf("Groups = %+v", gs)
	}
	// And come back from thon.yaml's groups in YAML.
	as, err = Parse([]byte("alpha:\n  title: Team Alpha\n  users: [{name: ada, email: ada@example.org}]\n"), "beta")
	if err != nil || len(as) != 1 || as[0].Email != "ada@example.org" {
		t.Errorf("YAML: %+v, %v", as, err)
	}
	// A broken address is refused at its row, not imported.
	if _, err := Parse([]byte("Name,Email\nAda,ada(at)example.org\n"), "beta"); err == nil || !strings.Contains(err.Error(), `row 1 (ada): the e-mail "ada(at)example.org" is not an e-mail address`) {
		t.Errorf("bad e-mail: %v", err)
	}
}
