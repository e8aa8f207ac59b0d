package pki

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
)

// publicCertText answers the CA endpoints when the organizer's own
// certificate is used.
const publicCertText = "This event uses a publicly trusted certificate: there is no local certificate authority to install.\n"

// Handler serves the local CA for participants to trust:
//
//	GET /ca.crt  the certificate, PEM (download as thon-ca.crt)
//	GET /ca.der  the certificate, DER
//	GET /ca      a page explaining how to trust it on each platform
//
// With the organizer's own certificate each answers 404 with a sentence
// saying so. Links on the page are relative, so the handler can be mounted
// under a prefix.
func (a *Authority) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.ca == nil {
		notFound := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(publicCertText))
		}
		for _, p := range []string{"/ca.crt", "/ca.der", "/ca"} {
			mux.HandleFunc("GET "+p, notFound)
		}
		return mux
	}
	pemBytes := a.CACertPEM()
	der := a.CACertDER()
	page := renderCAPage(a.ca)
	mux.HandleFunc("GET /ca.crt", func(w http.ResponseWriter, r *http.Request) {
		serveBytes(w, "application/x-pem-file", `attachment; filename="thon-ca.crt"`, pemBytes)
	})
	mux.HandleFunc("GET /ca.der", func(w http.ResponseWriter, r *http.Request) {
		serveBytes(w, "application/pkix-cert", `attachment; filename="thon-ca.der"`, der)
	})
	mux.HandleFunc("GET /ca", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		serveBytes(w, "text/html; charset=utf-8", "", page)
	})
	return mux
}

func serveBytes(w http.ResponseWriter, ctype, disposition string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	if disposition != "" {
		h.Set("Content-Disposition", disposition)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(body)
}

// pageCSS is the page's only style; the CSP allows exactly it by hash.
const pageCSS = `
:root{color-scheme:light dark;--fg:#1b1b1b;--bg:#fff;--muted:#555;--box:#f3f4f6;--accent:#0b57d0}
@media (prefers-color-scheme:dark){:root{--fg:#e8e8e8;--bg:#121212;--muted:#b0b0b0;--box:#1f2328;--accent:#8ab4f8}}
*{box-sizing:border-box}
body{margin:0;font:1rem/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:46rem;margin:0 auto;padding:1.5rem 1rem 3rem}
h1{font-size:1.6rem;line-height:1.25}
h2{font-size:1.25rem;margin-top:2.2rem;padding-top:.5rem;border-top:1px solid var(--box)}
a{color:var(--accent)}
a:focus-visible,summary:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
code,.fp{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
pre{background:var(--box);padding:.75rem;border-radius:6px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.fp{display:block;background:var(--box);padding:.75rem;border-radius:6px;word-break:break-all;font-size:1rem}
.dl{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}
.dl a{display:inline-block;padding:.6rem 1rem;border:2px solid var(--accent);border-radius:6px;text-decoration:none;font-weight:600}
.note{color:var(--muted)}
nav ul{padding-left:1.2rem;columns:2}
li{margin:.25rem 0}
`

var pageCSP = "default-src 'none'; style-src 'sha256-" + cssHash() + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func cssHash() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return base64.StdEncoding.EncodeToString(sum[:])
}

type pageData struct {
	CSS     template.CSS
	Subject string
	SHA256  string
	SHA1    string
	Expires string
}

func renderCAPage(ca *localCA) []byte {
	var buf bytes.Buffer
	err := caPage.Execute(&buf, pageData{
		CSS:     template.CSS(pageCSS),
		Subject: ca.cert.Subject.CommonName,
		SHA256:  fingerprintSHA256(ca.cert.Raw),
		SHA1:    fingerprintSHA1(ca.cert.Raw),
		Expires: ca.cert.NotAfter.Format("2 January 2006"),
	})
	if err != nil {
		// The template and its data are fixed; this is a programming error.
		panic("pki: render CA page: " + err.Error())
	}
	return buf.Bytes()
}

var caPage = template.Must(template.New("ca").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Trust this event's certificate · THON</title>
<style>{{.CSS}}</style>
</head>
<body>
<main>
<h1>Trust this event's certificate</h1>
<p>This event's server uses a certificate from its own certificate authority (CA), <strong>{{.Subject}}</strong>.
Your browser does not know it yet, so it warns that the connection is not private.
Install the CA once on each device you use, then reload the page: the warning goes away and the connection is encrypted and verified.</p>

<div class="dl">
<a href="ca.crt" download="thon-ca.crt">Download the CA certificate (thon-ca.crt)</a>
<a href="ca.der" download="thon-ca.der">DER format (thon-ca.der)</a>
</div>

<h2 id="check">Check the fingerprint</h2>
<p>Before trusting it, check that the certificate your device shows has this SHA-256 fingerprint,
and that it matches the one the organizers announce (on a slide or a printed card). If it does not match, do not install it.</p>
<p>SHA-256 fingerprint:
<code class="fp">{{.SHA256}}</code></p>
<p>Windows shows the SHA-1 <em>thumbprint</em> instead:
<code class="fp">{{.SHA1}}</code></p>
<p class="note">On the command line: <code>openssl x509 -noout -fingerprint -sha256 -in thon-ca.crt</code>.
The CA is valid until {{.Expires}}. While it is installed your device trusts every certificate it signs, so <a href="#remove">remove it after the event</a>.</p>

<nav aria-label="Platforms">
<p>Choose your device:</p>
<ul>
<li><a href="#windows">Windows</a></li>
<li><a href="#macos">macOS</a></li>
<li><a href="#linux">Linux (Debian, Ubuntu, Fedora)</a></li>
<li><a href="#firefox">Firefox (any system)</a></li>
<li><a href="#chrome-linux">Chrome or Chromium on Linux</a></li>
<li><a href="#android">Android</a></li>
<li><a href="#ios">iPhone and iPad (iOS)</a></li>
</ul>
</nav>

<h2 id="windows">Windows (Edge, Chrome)</h2>
<ol>
<li>Download <a href="ca.crt">thon-ca.crt</a> and open it.</li>
<li>Choose <strong>Install Certificate…</strong>, then <strong>Current User</strong>, then <strong>Next</strong>.</li>
<li>Choose <strong>Place all certificates in the following store</strong>, <strong>Browse…</strong>, select <strong>Trusted Root Certification Authorities</strong>, then <strong>OK</strong>, <strong>Next</strong>, <strong>Finish</strong>.</li>
<li>Windows shows a security warning with the thumbprint (sha1): check it against the SHA-1 thumbprint above, then choose <strong>Yes</strong>.</li>
<li>Restart the browser.</li>
</ol>
<p>Or in PowerShell: <code>Import-Certificate -FilePath thon-ca.crt -CertStoreLocation Cert:\CurrentUser\Root</code></p>

<h2 id="macos">macOS (Safari, Chrome, Edge)</h2>
<ol>
<li>Download <a href="ca.crt">thon-ca.crt</a> and open it: Keychain Access adds it to the <strong>login</strong> keychain.</li>
<li>In Keychain Access, find <strong>{{.Subject}}</strong> under <strong>Certificates</strong> and open it.</li>
<li>Expand <strong>Trust</strong> and set <strong>When using this certificate</strong> to <strong>Always Trust</strong>.</li>
<li>Close the window and confirm with your password. Compare the SHA-256 fingerprint shown under <strong>Details</strong> with the one above.</li>
</ol>
<p>Or in Terminal: <code>sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ~/Downloads/thon-ca.crt</code></p>

<h2 id="linux">Linux (system-wide: curl, git, Python, most command-line tools)</h2>
<p><strong>Debian and Ubuntu:</strong></p>
<pre><code>sudo cp thon-ca.crt /usr/local/share/ca-certificates/thon-ca.crt
sudo update-ca-certificates</code></pre>
<p><strong>Fedora</strong> (also RHEL, CentOS):</p>
<pre><code>sudo cp thon-ca.crt /etc/pki/ca-trust/source/anchors/thon-ca.crt
sudo update-ca-trust</code></pre>
<p class="note">Browsers on Linux keep their own lists: see <a href="#firefox">Firefox</a> and <a href="#chrome-linux">Chrome or Chromium on Linux</a>.</p>

<h2 id="firefox">Firefox (any system; it has its own certificate store)</h2>
<ol>
<li>Download <a href="ca.crt">thon-ca.crt</a>.</li>
<li>Open <strong>Settings</strong>, <strong>Privacy &amp; Security</strong>, scroll to <strong>Certificates</strong> and choose <strong>View Certificates…</strong>.</li>
<li>On the <strong>Authorities</strong> tab choose <strong>Import…</strong> and select the file.</li>
<li>Tick <strong>Trust this CA to identify websites</strong>, check the fingerprint with <strong>View</strong>, then <strong>OK</strong>.</li>
</ol>

<h2 id="chrome-linux">Chrome or Chromium on Linux (NSS)</h2>
<ol>
<li>Download <a href="ca.crt">thon-ca.crt</a>.</li>
<li>Open <code>chrome://certificate-manager</code> (older versions: <strong>Settings</strong>, <strong>Privacy and security</strong>, <strong>Security</strong>, <strong>Manage certificates</strong>).</li>
<li>Under <strong>Custom</strong> (older versions: the <strong>Authorities</strong> tab) choose <strong>Import</strong>, select the file, tick <strong>Trust this certificate for identifying websites</strong> and confirm.</li>
</ol>
<p>Or in a terminal (package <code>libnss3-tools</code> on Debian/Ubuntu, <code>nss-tools</code> on Fedora), then restart the browser:</p>
<pre><code>certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n "{{.Subject}}" -i thon-ca.crt</code></pre>

<h2 id="android">Android</h2>
<ol>
<li>Download <a href="ca.crt">thon-ca.crt</a> in Chrome.</li>
<li>Open <strong>Settings</strong> and search for <strong>CA certificate</strong> (usually <strong>Security &amp; privacy</strong>, <strong>More security settings</strong>, <strong>Encryption &amp; credentials</strong>, <strong>Install a certificate</strong>, <strong>CA certificate</strong>).</li>
<li>Choose <strong>Install anyway</strong>, confirm with your screen lock, and pick <strong>thon-ca.crt</strong> from Downloads.</li>
<li>Restart Chrome. (Firefox for Android: enable <strong>Use third party CA certificates</strong> in its settings.)</li>
</ol>

<h2 id="ios">iPhone and iPad (iOS, iPadOS)</h2>
<ol>
<li>Open this page in <strong>Safari</strong> and tap <a href="ca.crt">thon-ca.crt</a>; allow the download of the configuration profile. (If it lands in Downloads instead, open it from the <strong>Files</strong> app.)</li>
<li>Open <strong>Settings</strong>, <strong>General</strong>, <strong>VPN &amp; Device Management</strong>, tap <strong>{{.Subject}}</strong> and <strong>Install</strong>.</li>
<li>Then <strong>Settings</strong>, <strong>General</strong>, <strong>About</strong>, <strong>Certificate Trust Settings</strong>: turn on full trust for <strong>{{.Subject}}</strong>.</li>
</ol>

<h2 id="remove">After the event</h2>
<p>Remove the CA the way you added it: delete it from the store or keychain, or on Linux delete the copied file and run <code>update-ca-certificates --fresh</code> (Debian, Ubuntu) or <code>update-ca-trust</code> (Fedora).</p>
</main>
</body>
</html>
`))
