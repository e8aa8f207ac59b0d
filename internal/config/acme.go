package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
)

// dns01Hint is what an organizer does for a wildcard certificate.
const dns01Hint = "a wildcard certificate needs the DNS-01 challenge, which THON does not do: get *.DOMAIN and DOMAIN with your DNS provider's tooling or certbot's DNS plugin and set access.cert_file and access.key_file; see docs/access.md#certificates-for-a-domain"

// internalSuffixes are names no public CA issues certificates for.
var internalSuffixes = []string{".localhost", ".local", ".internal", ".home.arpa", ".test", ".example", ".invalid", ".lan"}

// checkACME validates access.acme and how it sits with the other access
// settings. at lists the paths a problem may be placed at, first found first.
func (c *Config) checkACME(add func(paths []string, p Problem)) {
	a := c.Access
	m := a.ACME
	if !m.Enabled() {
		if m.Directory != LetsEncryptDirectory || m.CARoot != "" {
			add([]string{"access.acme.email", "access.acme.directory", "access.acme.ca_root", "access.acme"}, Problem{
				Msg:  "access.acme.email: must be set to use ACME (directory or ca_root is set)",
				Hint: "ACME is on once email is set, e.g. email: you@example.org; or remove access.acme to use the local CA",
			})
		}
		return
	}
	bad := func(path, hint, format string, args ...any) {
		add([]string{path, "access.acme"}, Problem{Msg: path + ": " + fmt.Sprintf(format, args...), Hint: hint})
	}

	if addr, err := mail.ParseAddress(m.Email); err != nil || addr.Address != m.Email || !strings.Contains(m.Email[strings.LastIndex(m.Email, "@")+1:], ".") {
		bad("access.acme.email", "the address the CA writes to about your certificates, e.g. email: you@example.org", "%q is not an e-mail address", m.Email)
	}

	publicCA := false
	if u, err := url.Parse(m.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("access.acme.directory", "the CA's directory URL, https://…; Let's Encrypt's is "+LetsEncryptDirectory+" (the default), its staging one "+LetsEncryptStagingDirectory,
			"%q is not an https:// URL", m.Directory)
	} else {
		publicCA = strings.HasSuffix(u.Hostname(), ".api.letsencrypt.org")
	}

	if m.CARoot != "" {
		hint := "a PEM file holding the root certificate the ACME server's HTTPS chains to (relative paths start at thon.yaml's directory), or \"\" to trust the system's roots"
		if data, err := c.ReadFile(m.CARoot); err != nil {
			bad("access.acme.ca_root", hint, "%v", err)
		} else if msg := checkPEMCerts(data); msg != "" {
			bad("access.acme.ca_root", hint, "%s: %s", m.CARoot, msg)
		}
	}

	own := a.CertFile != ""
	if a.Mode == ModeSubdomain && !own {
		add([]string{"access.acme", "access.mode"}, Problem{
			Msg: fmt.Sprintf("access.acme: subdomain mode serves {user}.%s, which needs a wildcard certificate for *.%s; ACME here validates names one by one (HTTP-01, TLS-ALPN-01) and cannot issue it", domainOr(a.Domain), domainOr(a.Domain)),
			Hint: strings.ReplaceAll(dns01Hint, "DOMAIN", domainOr(a.Domain)) +
				"; access.acme may stay on beside it for access.hostnames outside the domain",
		})
		return
	}

	names, reported := 0, false
	for i, h := range a.Hostnames {
		path := fmt.Sprintf("access.hostnames.%d", i)
		name := strings.ToLower(strings.TrimSuffix(h, "."))
		switch {
		case !validHostname(h):
			reported = true // by the access checks
		case strings.HasPrefix(name, "*."):
			// With cert_file, wildcards are that certificate's.
			if !own {
				bad(path, strings.ReplaceAll(dns01Hint, "DOMAIN", strings.TrimPrefix(name, "*.")), "ACME cannot issue the wildcard %q", h)
				reported = true
			}
		case name == "localhost" || !strings.Contains(name, "."):
			bad(path, "ACME certificates are for DNS names that resolve to this machine, e.g. thon.example.org", "%q is not a name an ACME CA validates", h)
			reported = true
		case publicCA && hasSuffix(name, internalSuffixes):
			bad(path, "Let's Encrypt issues certificates for public DNS names only: use a name in a domain you own, or a private ACME CA (access.acme.directory and ca_root)", "%q is not a public DNS name", h)
			reported = true
		default:
			names++
		}
	}
	if names == 0 && !reported {
		hint := "list the DNS names pointing at this machine, e.g. hostnames: [thon.example.org]"
		if own {
			hint = "beside access.cert_file, ACME gets certificates for the hostnames that certificate does not cover: list them, or remove access.acme"
		}
		add([]string{"access.hostnames", "access.acme.email", "access.acme"}, Problem{Msg: "access.acme: needs access.hostnames to get certificates for", Hint: hint})
	}
}

func domainOr(d string) string {
	if d == "" {
		return "DOMAIN"
	}
	return d
}

func hasSuffix(name string, suffixes []string) bool {
	for _, s := range suffixes {
		if strings.HasSuffix(name, s) || name == s[1:] {
			return true
		}
	}
	return false
}

// checkPEMCerts says what keeps data from being PEM certificates, or "".
func checkPEMCerts(data []byte) string {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return "a certificate in it does not parse: " + err.Error()
		}
		n++
	}
	if n == 0 {
		return "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
	}
	return ""
}

// ipHint is the hint for an IP address written where a DNS name belongs.
func ipHint(h string) (string, bool) {
	if net.ParseIP(strings.Trim(h, "[]")) == nil {
		return "", false
	}
	return "hostnames are DNS names; an IP address goes in access.external_ip", true
}
