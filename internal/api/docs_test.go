package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSwaggerUIIsServedFromTheBinary(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	get := func(path string) (int, string, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, _, body := get("/api/docs/"); code != 200 || !strings.Contains(body, "swagger-ui") {
		t.Fatalf("/api/docs/: %d", code)
	}
	if code, _, body := get("/api/docs/swagger-initializer.js"); code != 200 || !strings.Contains(body, `"/api/v1/openapi.json"`) {
		t.Fatalf("initializer does not point at THON's document: %d %s", code, body)
	}
	for _, asset := range []string{"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"} {
		if code, _, body := get("/api/docs/" + asset); code != 200 || len(body) < 1000 {
			t.Fatalf("%s: %d (%d bytes)", asset, code, len(body))
		}
	}
	if code, _, _ := get("/api/docs/nope.js"); code != 404 {
		t.Fatalf("unknown asset: %d", code)
	}
	if code, ct, body := get("/api/v2/whatever"); code != 404 || !strings.HasPrefix(ct, "application/json") || !strings.Contains(body, "/api/docs") {
		t.Fatalf("unknown API path: %d %s %s", code, ct, body)
	}
	if code, _, _ := get("/api/docs"); code != 200 { // redirected to /api/docs/
		t.Fatalf("/api/docs: %d", code)
	}
}
