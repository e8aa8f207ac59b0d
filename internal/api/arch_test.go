package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/thon-dev/thon/internal/store"
)

// The API and the dashboard are adapters: they parse, authorize, call a
// service and render. They never hold the whole store (only its read side,
// store.Records) and never write the audit log themselves, so every change
// goes through the one service that owns its rule and its audit entry.
func TestHandlersChangeNothingThemselves(t *testing.T) {
	for _, dir := range []string{".", "../dashboard"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "store" && sel.Sel.Name == "Store" {
					t.Errorf("%s: uses *store.Store: take store.Records (reads) and call a service for changes", fset.Position(sel.Pos()))
				}
				if sel.Sel.Name == "AddEvent" {
					t.Errorf("%s: writes the audit log: the service that makes the change records it", fset.Position(sel.Pos()))
				}
				return true
			})
		}
	}
	// store.Records stays the read side.
	writes := []string{"Put", "Set", "Create", "Delete", "Add", "Revoke", "Update", "Assign", "Move", "Use", "Rename", "Import", "Touch", "Record", "Remove", "Rotate"}
	rt := reflect.TypeFor[store.Records]()
	for i := range rt.NumMethod() {
		m := rt.Method(i).Name
		for _, w := range writes {
			if rest, ok := strings.CutPrefix(m, w); ok && (rest == "" || unicode.IsUpper(rune(rest[0]))) {
				t.Errorf("store.Records has %s, which changes the store: give the change to a service", m)
			}
		}
	}
}
