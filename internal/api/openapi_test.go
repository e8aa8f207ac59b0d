package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/auth"
	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/gateway"
	"github.com/thon-dev/thon/wire"
)

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadOpenAPI parses the embedded document (the bytes the API serves).
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

// obj returns v[key] as a JSON object, or nil.
func obj(v any, key string) map[string]any {
	return asObj(asObj(v)[key])
}

// asObj returns v as a JSON object, or nil.
func asObj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

type openAPIOp struct {
	path, method string // method upper-case
	op           map[string]any
	item         map[string]any
}

func openAPIOps(t *testing.T, doc map[string]any) []openAPIOp {
	t.Helper()
	paths := obj(doc, "paths")
	if len(paths) == 0 {
		t.Fatal("openapi.json has no paths")
	}
	var out []openAPIOp
	for p, item := range paths {
		im, ok := item.(map[string]any)
		if !ok {
			t.Errorf("paths[%q] is not an object", p)
			continue
		}
		for _, m := range openAPIMethods {
			if op, ok := im[m].(map[string]any); ok {
				out = append(out, openAPIOp{path: p, method: strings.ToUpper(m), op: op, item: im})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].path+" "+out[i].method < out[j].path+" "+out[j].method
	})
	return out
}

// resolvePointer follows a local "#/…" JSON pointer in doc.
func resolvePointer(doc map[string]any, ref string) (any, bool) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, false
	}
	var cur any = doc
	if frag == "" {
		return cur, true
	}
	if !strings.HasPrefix(frag, "/") {
		return nil, false
	}
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = v
		default:
			return nil, false
		}
	}
	return cur, true
}

// deref resolves v when it is a {"$ref": …} object.
func deref(doc map[string]any, v any) map[string]any {
	m, _ := v.(map[string]any)
	if r, ok := m["$ref"].(string); ok {
		if target, ok := resolvePointer(doc, r); ok {
			m, _ = target.(map[string]any)
		}
	}
	return m
}

func TestOpenAPIDocumentParses(t *testing.T) {
	doc := loadOpenAPI(t)
	if v := doc["openapi"]; v != "3.1.0" {
		t.Errorf(`"openapi" is %v, want "3.1.0"`, v)
	}
	info := obj(doc, "info")
	if info["title"] != "THON API" || info["version"] == nil || info["description"] == nil {
		t.Errorf("info = %v, want title THON API, a version and a description", info)
	}
	scheme := obj(obj(obj(doc, "components"), "securitySchemes"), "bearer")
	if scheme["type"] != "http" || scheme["scheme"] != "bearer" {
		t.Errorf("components.securitySchemes.bearer = %v, want type http, scheme bearer", scheme)
	}
	cookie := obj(obj(obj(doc, "components"), "securitySchemes"), "session")
	if cookie["type"] != "apiKey" || cookie["in"] != "cookie" || cookie["name"] != auth.AdminCookie {
		t.Errorf("components.securitySchemes.session = %v, want the %s cookie", cookie, auth.AdminCookie)
	}
	sec, _ := doc["security"].([]any)
	if len(sec) != 2 || asObj(sec[0])["bearer"] == nil || asObj(sec[1])["session"] == nil {
		t.Errorf("global security = %v, want [{\"bearer\": []}, {\"session\": []}]", doc["security"])
	}
}

// TestOpenAPIRoutesMatch keeps the document and routeTable in step, both ways.
func TestOpenAPIRoutesMatch(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := map[string]openAPIOp{}
	for _, o := range openAPIOps(t, doc) {
		documented[o.method+" "+o.path] = o
	}
	inTable := map[string]bool{}
	for _, rt := range (&Server{}).routeTable() {
		// Go's {name} wildcards are OpenAPI's; {name...} matches the rest of the path.
		path := strings.ReplaceAll(rt.pattern, "...}", "}")
		if strings.Contains(path, "{$}") {
			t.Fatalf("route %s %s: {$} has no OpenAPI form; document it by hand and teach this test", rt.method, rt.pattern)
		}
		key := rt.method + " " + path
		if inTable[key] {
			t.Errorf("route %s is in routeTable twice", key)
		}
		inTable[key] = true
		o, ok := documented[key]
		if !ok {
			t.Errorf("route %s is not documented in openapi.json", key)
			continue
		}
		sec, has := o.op["security"]
		list, isList := sec.([]any)
		isPublic := rt.scope == public
		switch {
		case isPublic && (!has || !isList || len(list) != 0):
			t.Errorf("%s is public: its operation needs \"security\": [] (has %v)", key, sec)
		case !isPublic:
			// Every other operation names the scope it needs, for tokens and sessions alike.
			want := []any{map[string]any{"bearer": scopeList(rt.scope)}, map[string]any{"session": scopeList(rt.scope)}}
			if !reflect.DeepEqual(list, want) {
				t.Errorf("%s needs scope %q: its operation needs \"security\": %v (has %v)", key, rt.scope, want, sec)
			}
		}
		resps := obj(o.op, "responses")
		if !isPublic && resps["401"] == nil {
			t.Errorf("%s needs a token but does not document 401", key)
		}
		if !isPublic && resps["403"] == nil {
			t.Errorf("%s needs a scope but does not document 403", key)
		}
		hasSuccess := false
		for code := range resps {
			if strings.HasPrefix(code, "2") {
				hasSuccess = true
			}
		}
		if !hasSuccess {
			t.Errorf("%s documents no 2xx answer", key)
		}
	}
	for key := range documented {
		if !inTable[key] {
			t.Errorf("openapi.json documents %s, which is not in routeTable", key)
		}
	}
}

// scopeList is a scope as an operation's security requirement lists it.
func scopeList(scope string) []any {
	if scope == "" {
		return []any{}
	}
	return []any{scope}
}

var pathParamRE = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPIPathParameters checks that every {name} of a path is declared as
// a required path parameter, and that no undeclared one is.
func TestOpenAPIPathParameters(t *testing.T) {
	doc := loadOpenAPI(t)
	for _, o := range openAPIOps(t, doc) {
		want := map[string]bool{}
		for _, m := range pathParamRE.FindAllStringSubmatch(o.path, -1) {
			want[m[1]] = true
		}
		got := map[string]bool{}
		var params []any
		if ps, ok := o.item["parameters"].([]any); ok {
			params = append(params, ps...)
		}
		if ps, ok := o.op["parameters"].([]any); ok {
			params = append(params, ps...)
		}
		for _, p := range params {
			pm := deref(doc, p)
			if pm == nil {
				t.Errorf("%s %s: parameter %v does not resolve to an object", o.method, o.path, p)
				continue
			}
			if pm["in"] != "path" {
				continue
			}
			n, _ := pm["name"].(string)
			got[n] = true
			if pm["required"] != true {
				t.Errorf("%s %s: path parameter %q must be required", o.method, o.path, n)
			}
			if !want[n] {
				t.Errorf("%s %s: path parameter %q is not in the path", o.method, o.path, n)
			}
		}
		for n := range want {
			if !got[n] {
				t.Errorf("%s %s: {%s} is not declared as a path parameter", o.method, o.path, n)
			}
		}
	}
}

// TestOpenAPIRefsResolve checks every "$ref" points at an existing component.
func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"]; ok {
				n++
				s, _ := r.(string)
				if !strings.HasPrefix(s, "#/components/") {
					t.Errorf("%s: $ref %v is not a local #/components/… reference", where, r)
				} else if target, ok := resolvePointer(doc, s); !ok {
					t.Errorf("%s: $ref %s does not resolve", where, s)
				} else if _, ok := target.(map[string]any); !ok {
					t.Errorf("%s: $ref %s is not an object", where, s)
				}
			}
			for k, c := range v {
				walk(where+"/"+k, c)
			}
		case []any:
			for i, c := range v {
				walk(where+"/"+strconv.Itoa(i), c)
			}
		}
	}
	walk("#", doc)
	if n == 0 {
		t.Error("openapi.json has no $ref at all: the walk is broken")
	}
}

// TestOpenAPIOperationIDsUnique checks every operation has a distinct operationId.
func TestOpenAPIOperationIDsUnique(t *testing.T) {
	doc := loadOpenAPI(t)
	tags := map[string]bool{}
	declared, _ := doc["tags"].([]any)
	for _, tg := range declared {
		if n, _ := asObj(tg)["name"].(string); n != "" {
			tags[n] = true
		}
	}
	seen := map[string]string{}
	for _, o := range openAPIOps(t, doc) {
		key := o.method + " " + o.path
		id, _ := o.op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", key)
			continue
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("operationId %q is used by %s and %s", id, prev, key)
		}
		seen[id] = key
		if s, _ := o.op["summary"].(string); s == "" {
			t.Errorf("%s has no summary", key)
		}
		ts, _ := o.op["tags"].([]any)
		if len(ts) == 0 {
			t.Errorf("%s has no tag", key)
		}
		for _, tg := range ts {
			if s, _ := tg.(string); !tags[s] {
				t.Errorf("%s: tag %v is not declared in the document's tags", key, tg)
			}
		}
	}
}

// jsonField is one key of a Go type's JSON form.
type jsonField struct {
	name      string
	omittable bool // omitempty or omitzero: may be left out
}

// jsonFields lists the keys encoding/json writes for struct type t.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, jsonFields(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		o := strings.Split(opts, ",")
		out = append(out, jsonField{name: name, omittable: slices.Contains(o, "omitempty") || slices.Contains(o, "omitzero")})
	}
	return out
}

// TestOpenAPISchemasMatchGoTypes checks that each schema has exactly the
// properties the Go type marshals to, and, for answers, that a property is
// required exactly when the Go field is always written.
func TestOpenAPISchemasMatchGoTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := obj(obj(doc, "components"), "schemas")
	for _, c := range []struct {
		schema string
		typ    any
		answer bool     // only sent by the daemon: check required
		extra  []string // always-written keys not in the Go type
	}{
		{"Status", wire.Status{}, true, nil},
		{"Result", wire.Result{}, true, nil},
		{"Progress", wire.Progress{}, true, nil},
		{"Summary", wire.Summary{}, true, nil},
		{"ReconcileReport", wire.ReconcileReport{}, true, nil},
		{"BulkRequest", wire.BulkRequest{}, false, nil},
		{"BulkLine", wire.BulkLine{}, true, nil},
		{"SandboxList", wire.SandboxList{}, true, nil},
		{"Error", wire.Error{}, true, nil},
		{"Health", wire.Health{}, true, nil},
		{"Info", wire.InfoDetail{}, true, nil},
		{"TLSStatus", wire.TLSStatus{}, true, nil},
		{"TLSName", wire.TLSName{}, true, nil},
		{"DoctorReport", wire.DoctorReport{}, true, nil},
		{"DoctorCheck", wire.DoctorCheck{}, true, nil},
		{"Capacity", wire.DoctorCapacity{}, true, nil},
		{"CapacityResource", wire.DoctorResource{}, true, nil},
		{"Group", wire.Group{}, true, nil},
		{"User", wire.User{}, true, nil},
		{"Event", wire.Event{}, true, nil},
		{"ImportResult", wire.ImportResult{}, true, nil},
		{"Instance", wire.Instance{}, true, nil},
		{"Problem", wire.Problem{}, true, nil},
		{"Link", wire.Link{}, true, nil},
		{"LinkItem", wire.Link{}, true, nil},
		{"LinksRequest", wire.LinksRequest{}, false, nil},
		{"RevokeResult", wire.RevokeResult{}, true, nil},
		{"GatewayKey", wire.GatewayKey{}, true, nil},
		{"RotatedKey", wire.RotatedKey{}, true, nil},
		{"ReplicaKey", wire.ReplicaKey{}, true, nil},
		{"UsageRow", wire.UsageRow{}, true, nil},
		{"LLMStatus", wire.LLMStatus{}, true, nil},
		{"LoadedModel", wire.LoadedModel{}, true, nil},
		{"SlotSummary", wire.SlotSummary{}, true, nil},
		{"LLMStats", wire.LLMStats{}, true, nil},
		{"ConfiguredModel", wire.ConfiguredModel{}, true, nil},
		{"ScalePlan", wire.ScalePlan{}, true, nil},
		{"ModelPlan", wire.ModelPlan{}, true, nil},
		{"Applied", wire.Applied{}, true, nil},
		{"LLMModel", wire.LLMModel{}, true, nil},
		{"ModelRequest", wire.ModelRequest{}, false, nil},
		{"PullProgress", wire.PullProgress{}, true, nil},
		{"PullLine", wire.PullLine{}, true, nil},
		{"UsageTick", wire.UsageTick{}, true, nil},
		{"QueueStat", gateway.QueueStat{}, true, nil},
		{"GroupQueueStat", gateway.GroupQueueStat{}, true, nil},
		{"Principal", wire.Principal{}, true, nil},
		{"Token", wire.Token{}, true, nil},
		{"TokenRequest", wire.TokenRequest{}, false, nil},
		{"CreatedToken", wire.CreatedToken{}, true, nil},
		{"Invite", wire.Invite{}, true, nil},
		{"InviteRequest", wire.InviteRequest{}, false, nil},
		{"CreatedInvite", wire.CreatedInvite{}, true, nil},
		{"ImportUsersRequest", wire.ImportUsersRequest{}, false, nil},
		{"ConfigFile", wire.ConfigFile{}, true, nil},
		{"FileRequest", wire.FileRequest{}, false, nil},
		{"FileSaved", wire.FileSaved{}, true, nil},
		{"LLMServer", wire.LLMServer{}, true, nil},
		{"UsageSummary", wire.UsageSummary{}, true, nil},
		{"Usage", wire.Usage{}, true, nil},
		{"KeyUsage", wire.KeyUsage{}, true, nil},
		{"RenewRequest", wire.RenewRequest{}, false, nil},
		{"Renewed", wire.Renewed{}, true, nil},
		{"Template", wire.Template{}, true, nil},
		// thon.yaml, as POST /api/v1/import takes it and GET /api/v1/info
		// shows its sandbox: section.
		{"Config", config.Config{}, false, nil},
		{"Server", config.Server{}, false, nil},
		{"Sandbox", config.Sandbox{}, false, nil},
		{"Limits", config.Limits{}, false, nil},
		{"ConfigGroup", config.Group{}, false, nil},
		{"ConfigTemplate", config.Template{}, false, nil},
		{"TemplateLimits", config.TemplateLimits{}, false, nil},
		{"TemplateAssistants", config.TemplateAssistants{}, false, nil},
		{"TemplateAssistant", config.TemplateAssistant{}, false, nil},
		{"LLM", config.LLM{}, false, nil},
		{"Auth", config.Auth{}, false, nil},
		{"Kubernetes", config.Kubernetes{}, false, nil},
		{"Providers", config.Providers{}, false, nil},
		{"OAuthClient", config.OAuthClient{}, false, nil},
		{"GitProvider", config.GitProvider{}, false, nil},
		{"OIDCProvider", config.OIDCProvider{}, false, nil},
		{"Access", config.Access{}, false, nil},
		{"ACME", config.ACME{}, false, nil},
		{"LLMModelSettings", config.LLMModel{}, false, nil},
		{"Assistants", config.Assistants{}, false, nil},
		{"Assistant", config.Assistant{}, false, nil},
		{"ShortRequests", config.ShortRequests{}, false, nil},
	} {
		s := obj(schemas, c.schema)
		if s == nil {
			t.Errorf("components.schemas.%s is missing", c.schema)
			continue
		}
		props := obj(s, "properties")
		want := map[string]bool{} // name → required
		for _, f := range jsonFields(reflect.TypeOf(c.typ)) {
			want[f.name] = !f.omittable
		}
		for _, e := range c.extra {
			name, optional := strings.CutSuffix(e, "?")
			want[name] = !optional
		}
		for n := range want {
			if props[n] == nil {
				t.Errorf("schema %s lacks property %q of %T", c.schema, n, c.typ)
			}
		}
		for n := range props {
			if _, ok := want[n]; !ok {
				t.Errorf("schema %s has property %q, which %T does not marshal", c.schema, n, c.typ)
			}
		}
		req := map[string]bool{}
		if rs, ok := s["required"].([]any); ok {
			for _, r := range rs {
				n, _ := r.(string)
				req[n] = true
				if props[n] == nil {
					t.Errorf("schema %s requires %q, which is not one of its properties", c.schema, n)
				}
			}
		}
		if !c.answer {
			continue
		}
		for n, always := range want {
			if always && !req[n] {
				t.Errorf("schema %s: %q is always written by %T: list it in required", c.schema, n, c.typ)
			}
			if !always && req[n] {
				t.Errorf("schema %s: %q may be left out by %T (omitempty/omitzero): do not require it", c.schema, n, c.typ)
			}
		}
	}
}

// TestOpenAPIServed checks the route serves the embedded document as JSON, without a token.
func TestOpenAPIServed(t *testing.T) {
	srv := New(Options{})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json: status %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if rec.Body.String() != string(openapiDoc) {
		t.Error("the served document differs from openapi.json")
	}
}
