package dashboard

import (
	"reflect"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/config"
)

func TestParseAttendees(t *testing.T) {
	for _, tc := range []struct {
		name, in, group string
		want            config.Groups
		err             string
	}{
		{"event platform export", "\ufeffFirst Name,Last Name,Email,Ticket Type,Team\nAda,Lovelace,ada@example.org,Student,Alpha\nAlan,Turing,alan@example.org,Pro,\n", "beta",
			config.Groups{{Name: "alpha", Users: []string{"ada-lovelace"}}, {Name: "beta", Users: []string{"alan-turing"}}}, ""},
		{"one name per row", "alice\nbob\n", "alpha", config.Groups{{Name: "alpha", Users: []string{"alice", "bob"}}}, ""},
		{"name,group,email", "carol,beta,carol@example.org\ndave,alpha\n", "", config.Groups{{Name: "beta", Users: []string{"carol"}}, {Name: "alpha", Users: []string{"dave"}}}, ""},
		{"emails only, semicolons", "email;group\nEve.Smith@example.org;gamma\n", "", config.Groups{{Name: "gamma", Users: []string{"eve-smith"}}}, ""},
		{"yaml groups section", "groups:\n  alpha: [alice]\n  beta: {users: [bob]}\n", "", config.Groups{{Name: "alpha", Users: []string{"alice"}}, {Name: "beta", Users: []string{"bob"}}}, ""},
		{"yaml without the key", "alpha: [alice, bob]\n", "", config.Groups{{Name: "alpha", Users: []string{"alice", "bob"}}}, ""},
		{"no group", "alice\n", "", nil, "row 1 (alice): no group"},
		{"two people, one name", "name\nAda L\nada-l\n", "alpha", nil, "row 2: ada-l is also on row 1"},
		{"header without names", "Order,Ticket Type,Team\n1,Student,alpha\n", "alpha", nil, "has no name, first name or email column"},
		{"bad yaml user", "alpha: [Alice]\n", "", nil, `invalid user name "Alice"`},
		{"empty", "name\n", "alpha", nil, "no participants found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAttendees([]byte(tc.in), tc.group)
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

func TestCheckFile(t *testing.T) {
	for _, tc := range []struct {
		kind, content string
		line          int
		msg           string
	}{
		{"vscode-settings", "{\n  \"a\": 1\n  \"b\": 2\n}", 3, "invalid character"},
		{"kilo-base", "[1]", 0, "must be an object"},
		{"continue-base", "name: x\nmodels:\n  - a: [\n", 3, "yaml"},
		{"extensions", "ms-python.python\nnot an id\n", 2, "neither an extension id"},
		{"groups-yaml", "alpha: [alice]\nbeta: [alice]\n", 2, `user "alice" is in two groups: already in "alpha" at line 1`},
		{"nonsense", "x", 0, "unknown kind"},
	} {
		errs := CheckFile(tc.kind, []byte(tc.content))
		if len(errs) == 0 || errs[0].Line != tc.line || !strings.Contains(errs[0].Msg, tc.msg) {
			t.Errorf("%s: %+v, want line %d with %q", tc.kind, errs, tc.line, tc.msg)
		}
	}
	for kind, ok := range map[string]string{"vscode-settings": "{\"a\": 1, // c\n}", "continue-base": "name: x\n", "extensions": "# c\nms-python.python\n", "groups-yaml": "alpha: [alice]\n"} {
		if errs := CheckFile(kind, []byte(ok)); len(errs) != 0 {
			t.Errorf("%s: %+v for a good file", kind, errs)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/instances?group=a": "/instances?group=a", "//evil.example": "/", "https://evil.example": "/", "/\\evil": "/", "": "/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuckets(t *testing.T) {
	v := make([]int64, 1440)
	for i := range v {
		v[i] = 1
	}
	b := buckets(v, 60)
	if len(b) != 60 || b[0] != 24 || b[59] != 24 {
		t.Fatalf("buckets: %d, %v", len(b), b[:3])
	}
	if got := buckets([]int64{1, 2}, 60); len(got) != 2 {
		t.Fatalf("short input changed: %v", got)
	}
}
