package client_test

import (
	"go/build"
	"strings"
	"testing"
)

// The client is an SDK: a program using it pulls in the standard library
// and the API's types (package wire), nothing of the daemon.
func TestImportsOnlyTheStandardLibraryAndWire(t *testing.T) {
	for _, dir := range []string{".", "../wire"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			first, _, _ := strings.Cut(imp, "/")
			if strings.Contains(first, ".") && imp != "github.com/thon-dev/thon/wire" || imp == "C" {
				t.Errorf("package %s imports %s: the client may use the standard library and package wire only", pkg.ImportPath, imp)
			}
			if dir == "../wire" && strings.HasPrefix(imp, "github.com/") {
				t.Errorf("package wire imports %s: it may use the standard library only", imp)
			}
		}
	}
}
