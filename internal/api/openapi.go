package api

import (
	_ "embed"
	"io/fs"
	"net/http"

	swaggerfiles "github.com/swaggo/files/v2"
)

// openapiDoc is the OpenAPI 3.1 description of every route in routeTable;
// a test keeps the two in step.
//
//go:embed openapi.json
var openapiDoc []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openapiDoc) // a client that went away needs no error answer
	return nil
}

// swaggerInit points Swagger UI at THON's own document.
const swaggerInit = `window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  });
};
`

// docsHandler serves Swagger UI from the binary: no CDN, works offline.
func docsHandler() http.Handler {
	files := http.FileServer(http.FS(swaggerfiles.FS))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/swagger-initializer.js" {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Write([]byte(swaggerInit))
			return
		}
		if _, err := fs.Stat(swaggerfiles.FS, trimSlash(r.URL.Path)); err != nil && r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

func trimSlash(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}
