// Package githubtest is a test server speaking GitHub's OAuth web flow and
// the parts of its REST API THON reads: authorize (signing in the next
// queued user at once, as a browser that is already signed in to GitHub
// would), the token exchange with PKCE, /user and /user/emails. It serves
// the API under /api/v3, as GitHub Enterprise does: THON's github.url points
// at it.
package githubtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
)

// User is a GitHub account.
type User struct {
	ID       int64
	Login    string
	Name     string
	Email    string // primary, verified
	Verified bool
}

// Server is a running fake GitHub.
type Server struct {
	URL                    string
	ClientID, ClientSecret string

	srv *httptest.Server

	mu     sync.Mutex
	next   []User
	codes  map[string]grant // code → grant, until exchanged
	tokens map[string]User  // access token → user
	used   map[string]bool  // codes already exchanged
	Log    []string
}

type grant struct {
	user                User
	redirect, challenge string
}

// New starts a fake GitHub with one OAuth app.
func New() *Server {
	s := &Server{ClientID: "Iv1." + random(8), ClientSecret: random(20), codes: map[string]grant{}, tokens: map[string]User{}, used: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", s.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", s.token)
	mux.HandleFunc("GET /api/v3/user", s.user)
	mux.HandleFunc("GET /api/v3/user/emails", s.emails)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// QueueUser makes u the one who signs in next.
func (s *Server) QueueUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = append(s.next, u)
}

func (s *Server) logf(msg string) {
	s.mu.Lock()
	s.Log = append(s.Log, msg)
	s.mu.Unlock()
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.ClientID {
		http.Error(w, "The client_id is not valid.", http.StatusNotFound)
		return
	}
	redirect, state := q.Get("redirect_uri"), q.Get("state")
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		s.logf("authorize without PKCE")
		http.Error(w, "PKCE (S256) required by this test server", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if len(s.next) == 0 {
		s.mu.Unlock()
		http.Error(w, "no user queued", http.StatusInternalServerError)
		return
	}
	u := s.next[0]
	s.next = s.next[1:]
	code := random(10)
	s.codes[code] = grant{user: u, redirect: redirect, challenge: q.Get("code_challenge")}
	s.mu.Unlock()
	to, err := url.Parse(redirect)
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	v := to.Query()
	v.Set("code", code)
	v.Set("state", state)
	to.RawQuery = v.Encode()
	http.Redirect(w, r, to.String(), http.StatusFound)
}

// token answers like GitHub: 200 with an error field when the exchange is
// refused, in JSON or form encoding as the client asks.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	answer := func(v map[string]string) {
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(v)
			return
		}
		form := url.Values{}
		for k, x := range v {
			form.Set(k, x)
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		w.Write([]byte(form.Encode()))
	}
	refuse := func(code, why string) {
		s.logf("token refused: " + code + ": " + why)
		answer(map[string]string{"error": code, "error_description": why})
	}
	if r.PostForm.Get("client_id") != s.ClientID || r.PostForm.Get("client_secret") != s.ClientSecret {
		refuse("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
		return
	}
	code := r.PostForm.Get("code")
	s.mu.Lock()
	g, ok := s.codes[code]
	delete(s.codes, code)
	replay := s.used[code]
	s.used[code] = true
	s.mu.Unlock()
	switch {
	case replay:
		refuse("bad_verification_code", "The code passed is incorrect or expired (already used).")
		return
	case !ok:
		refuse("bad_verification_code", "The code passed is incorrect or expired.")
		return
	case r.PostForm.Get("redirect_uri") != "" && r.PostForm.Get("redirect_uri") != g.redirect:
		refuse("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		refuse("invalid_grant", "The code_verifier does not match the code_challenge.")
		return
	}
	tok := "gho_" + random(18)
	s.mu.Lock()
	s.tokens[tok] = g.user
	s.mu.Unlock()
	answer(map[string]string{"access_token": tok, "token_type": "bearer", "scope": "read:user,user:email"})
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request) (User, bool) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	u, ok := s.tokens[tok]
	s.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`))
	}
	return u, ok
}

func (s *Server) user(w http.ResponseWriter, r *http.Request) {
	u, ok := s.auth(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"id": u.ID, "login": u.Login, "name": u.Name, "email": nil, "type": "User"})
}

func (s *Server) emails(w http.ResponseWriter, r *http.Request) {
	u, ok := s.auth(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	list := []map[string]any{{"email": u.Login + "@users.noreply.github.com", "primary": false, "verified": true, "visibility": nil}}
	if u.Email != "" {
		list = append(list, map[string]any{"email": u.Email, "primary": true, "verified": u.Verified, "visibility": "private"})
	}
	json.NewEncoder(w).Encode(list)
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
