package auth

import (
	"net/http"
	"strings"
)

// SameOrigin reports whether r comes from a page of its own origin: its
// Origin (or, without one, its Referer) is https://{Host}, or the browser
// says the request is same-origin. A request with none of these (a script
// with a token, an old browser) passes: cookies alone never authorize it
// without the other checks (CSRF tokens, SameSite cookies).
//
// One check for the front door's WebSocket upgrades and forms, the
// dashboard's forms and the API's cookie-authenticated requests.
func SameOrigin(r *http.Request) bool {
	want := "https://" + r.Host
	if o := r.Header.Get("Origin"); o != "" {
		return strings.EqualFold(o, want)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		return strings.EqualFold(ref, want) || len(ref) > len(want) && strings.EqualFold(ref[:len(want)+1], want+"/")
	}
	return r.Header.Get("Sec-Fetch-Site") != "cross-site"
}
