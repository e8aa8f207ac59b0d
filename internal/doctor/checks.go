package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thon-dev/thon/internal/config"
	"github.com/thon-dev/thon/internal/imagebuild"
	"github.com/thon-dev/thon/internal/llm"
	"github.com/thon-dev/thon/internal/pki"
	"github.com/thon-dev/thon/internal/sandbox"
)

// engine checks that the sandbox engine answers.
func (d *doc) engine() bool {
	c := Check{ID: "engine", Name: "Container engine"}
	defer func() { d.add(c) }()
	if d.o.Runtime == nil {
		c.Status, c.Detail = Fail, "no sandbox engine"
		if d.o.RuntimeErr != nil {
			c.Detail = d.o.RuntimeErr.Error()
		}
		c.Fix = "install and start Docker: sudo thon setup"
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.o.Runtime.Ping(ctx); err != nil {
		c.Status, c.Detail = Fail, err.Error()
		c.Fix = "start the engine: sudo systemctl start docker (sudo thon setup installs it when missing)"
		return false
	}
	c.Status, c.Detail = OK, d.o.Runtime.Name()+" answers"
	if d.meter != nil {
		if h, err := d.meter.Host(ctx); err == nil {
			d.host = &h
			c.Detail = fmt.Sprintf("%s %s on %s: %d CPUs, %s memory", h.Engine, h.Version, h.OS, h.CPUs, gib(h.Memory))
		}
	}
	return true
}

// image checks the participant image and its code-server.
func (d *doc) image() {
	c := Check{ID: "image", Name: "Participant image"}
	defer func() { d.add(c) }()
	ref := d.cfg.Sandbox.Image
	if d.meter == nil {
		c.Status, c.Detail = OK, ref+": pulled by the cluster's nodes (not checked here)"
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	img, err := d.meter.Image(ctx, ref)
	if errors.Is(err, sandbox.ErrNotFound) {
		c.Status, c.Detail = Fail, ref+" is not on the engine"
		c.Fix = "build it: sudo thon setup image (or sudo thon setup, which does every step)"
		return
	}
	if err != nil {
		c.Status, c.Detail = Fail, err.Error()
		return
	}
	c.Status = OK
	c.Detail = fmt.Sprintf("%s: %s", ref, mib(img.Size))
	if !img.Created.IsZero() {
		c.Detail += ", built " + img.Created.Local().Format("2006-01-02")
	}
	switch v := img.Labels[imagebuild.LabelCodeServerVersion]; {
	case v == "":
		c.Status = Warn
		c.Detail += "; its code-server version is unknown (not built by thon setup image)"
		c.Fix = "make sure it runs code-server with --auth none on sandbox.port (" + strconv.Itoa(d.cfg.Sandbox.Port) + ") and answers " + d.cfg.Sandbox.HealthPath + ", or build THON's: sudo thon setup image"
	case v != imagebuild.DefaultCodeServerVersion:
		c.Status = Warn
		c.Detail += ", code-server " + v + " (this THON is made for " + imagebuild.DefaultCodeServerVersion + ")"
		c.Fix = "rebuild it: sudo thon setup image --rebuild"
	default:
		c.Detail += ", code-server " + v
	}
}

// llmImage checks the image of the LLM server THON runs.
func (d *doc) llmImage(engineOK bool) {
	l := d.cfg.LLM
	if !l.Enabled || !l.IsManaged() {
		return
	}
	c := Check{ID: "llm-image", Name: "LLM server image"}
	defer func() { d.add(c) }()
	if !engineOK {
		c.Status, c.Detail, c.Fix = Fail, "not checked: the engine does not answer", "start the engine first"
		return
	}
	if d.meter == nil {
		c.Status, c.Detail = Fail, "THON runs its LLM server on Docker only"
		c.Fix = "run llama-server yourself and set llm.url"
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	img, err := d.meter.Image(ctx, l.Image)
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		c.Status, c.Detail, c.Fix = Fail, l.Image+" is not on the engine", "build it: sudo thon setup llm (or sudo thon setup)"
	case err != nil:
		c.Status, c.Detail = Fail, err.Error()
	default:
		c.Status, c.Detail = OK, fmt.Sprintf("%s: %s", l.Image, mib(img.Size))
		if v := img.Labels[imagebuild.LabelLLMVersion]; v != "" {
			c.Detail += ", llama-server " + v
		}
	}
}

// llmModel checks that the models a llama.cpp server needs are on disk.
func (d *doc) llmModel() {
	l := d.cfg.LLM
	if !l.Enabled || l.Backend != config.BackendLlamacpp || !l.IsManaged() {
		return
	}
	c := Check{ID: "llm-model", Name: "LLM model files", Status: OK}
	defer func() { d.add(c) }()
	dir, _ := d.cfg.DataDir()
	models := filepath.Join(dir, "models")
	var found []string
	for _, rm := range llm.Configured(l) {
		m := rm.Model
		switch {
		case l.TestModel(m):
			c.Status = worse(c.Status, Warn)
			found = append(found, rm.Role+": THON's built-in test model (one sentence per answer)")
			c.Fix = "for a real assistant set llm.chat_model.file to a GGUF file, or a checkpoint and run thon llm pull"
		case m.File != "":
			info, err := config.ModelFileInfo(m.File)
			if err != nil {
				c.Status = Fail
				found = append(found, fmt.Sprintf("%s: %s: %v", rm.Role, m.File, err))
				c.Fix = "fix llm." + rm.Role + "_model.file: a GGUF file on this machine, readable by THON"
				continue
			}
			what := m.File
			if fi, err := os.Stat(m.File); err == nil {
				what += ", " + gib(fi.Size())
			}
			if a := info.Architecture(); a != "" {
				what += ", " + a
			}
			found = append(found, rm.Role+": "+what)
		default:
			f, err := llm.DownloadedFile(models, m.Checkpoint)
			if err != nil {
				c.Status = Fail
				found = append(found, rm.Role+": "+err.Error())
				c.Fix = "download it: thon llm pull (sudo thon setup does it too)"
				continue
			}
			found = append(found, fmt.Sprintf("%s: %s", rm.Role, f))
		}
	}
	c.Detail = strings.Join(found, "; ")
}

// port is one address THON needs to listen on.
type port struct {
	what, addr string
}

// ports checks that what THON listens on is free (or THON's own).
func (d *doc) ports() {
	a, cfg := d.cfg.Access, d.cfg
	c := Check{ID: "ports", Name: "Ports", Status: OK}
	defer func() { d.add(c) }()
	var need []port
	need = append(need, port{"front door (HTTPS)", ":" + strconv.Itoa(a.HTTPSPort)})
	if a.HTTPPort != 0 {
		need = append(need, port{"HTTP redirect and ACME", ":" + strconv.Itoa(a.HTTPPort)})
	}
	if dp := a.Dashboard(); dp != a.HTTPSPort {
		need = append(need, port{"dashboard", ":" + strconv.Itoa(dp)})
	}
	need = append(need, port{"REST API", cfg.Server.Listen})
	if cfg.Gateway.Enabled {
		need = append(need, port{"AI gateway", cfg.Gateway.Listen})
	}
	var ok, bad []string
	for _, p := range need {
		if why, fix := d.listenable(p.addr); why != "" {
			c.Status = Fail
			bad = append(bad, fmt.Sprintf("%s %s: %s", p.what, p.addr, why))
			c.Fix = appendFix(c.Fix, fix)
			continue
		}
		ok = append(ok, p.addr)
	}
	if a.Mode == config.ModePort {
		first, last, err := a.Ports()
		if err == nil {
			n := last - first + 1
			if n < d.o.Participants {
				c.Status = Fail
				bad = append(bad, fmt.Sprintf("access.port_range %s has %d ports for %d participants", a.PortRange, n, d.o.Participants))
				c.Fix = appendFix(c.Fix, fmt.Sprintf("widen access.port_range to at least %d ports", d.o.Participants))
			}
			if !d.o.Daemon { // the daemon holds its participants' ports
				taken := 0
				for p := first; p <= last && p < first+max(d.o.Participants, 1); p++ {
					if why, _ := d.listenable(":" + strconv.Itoa(p)); why != "" {
						taken++
					}
				}
				if taken > 0 {
					c.Status = worse(c.Status, Warn)
					bad = append(bad, fmt.Sprintf("%d of the first %d ports of access.port_range %s are in use", taken, max(d.o.Participants, 1), a.PortRange))
					c.Fix = appendFix(c.Fix, "choose another access.port_range, or stop what uses those ports")
				} else {
					ok = append(ok, fmt.Sprintf("%d participant ports from %d", max(d.o.Participants, 1), first))
				}
			}
		}
	}
	c.Detail = strings.Join(append(bad, "free or THON's: "+strings.Join(ok, ", ")), "; ")
}

// listenable says why THON could not listen on addr, and the fix; "" when
// it can (or already does).
func (d *doc) listenable(addr string) (why, fix string) {
	if slices.Contains(d.o.Serving, addr) {
		return "", ""
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return "", ""
	}
	_, p, _ := net.SplitHostPort(addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		if d.o.Daemon && d.servesPort(p) {
			return "", ""
		}
		return "in use by another program", "find it with: sudo ss -ltnp 'sport = :" + p + "'; stop it, or choose another port in thon.yaml"
	case errors.Is(err, syscall.EACCES):
		return "needs root (ports below 1024)", "run THON as root (its systemd unit does: sudo thon setup), or give it CAP_NET_BIND_SERVICE"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "that address is not on this machine", "listen on an address of this machine, or 0.0.0.0"
	}
	return err.Error(), ""
}

// servesPort reports whether the daemon serves port on some address.
func (d *doc) servesPort(p string) bool {
	for _, s := range d.o.Serving {
		if _, sp, err := net.SplitHostPort(s); err == nil && sp == p {
			return true
		}
	}
	return false
}

// externalIP is the address participants reach THON at.
func (d *doc) externalIP() string {
	switch {
	case d.o.ExternalIP != "":
		return d.o.ExternalIP
	case d.cfg.Access.ExternalIP != "":
		return d.cfg.Access.ExternalIP
	}
	if ip, err := pki.DetectExternalIP(); err == nil {
		return ip.String()
	}
	return "127.0.0.1"
}

// names are the host names participants use.
func (d *doc) names() []string {
	a := d.cfg.Access
	names := slices.Clone(a.Hostnames)
	if a.Mode == config.ModeSubdomain && a.Domain != "" {
		names = append(names, a.Domain, "thon-doctor."+a.Domain) // any name under it
	}
	return names
}

// localAddrs are this machine's addresses.
func (d *doc) localAddrs() map[string]bool {
	out := map[string]bool{d.externalIP(): true}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out[n.IP.String()] = true
		}
	}
	return out
}

// dns checks that the host names resolve to this machine.
func (d *doc) dns(ctx context.Context) {
	c := Check{ID: "dns", Name: "Host names", Status: OK}
	defer func() { d.add(c) }()
	names := d.names()
	if len(names) == 0 {
		c.Detail = "none in access.hostnames: participants use " + d.externalIP()
		return
	}
	local := d.localAddrs()
	var parts []string
	for _, n := range names {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := d.o.Resolver.LookupHost(lctx, n)
		cancel()
		if err != nil {
			c.Status = Fail
			parts = append(parts, n+" does not resolve")
			what := "an A record " + n + " → " + d.externalIP()
			if strings.HasPrefix(n, "thon-doctor.") {
				what = "a wildcard record *." + strings.TrimPrefix(n, "thon-doctor.") + " → " + d.externalIP() + " (subdomain mode)"
			}
			c.Fix = appendFix(c.Fix, "add "+what+" to its DNS zone")
			continue
		}
		mine := slices.ContainsFunc(addrs, func(a string) bool { return local[a] })
		if mine {
			parts = append(parts, n+" → "+strings.Join(addrs, ", "))
			continue
		}
		c.Status = worse(c.Status, Warn)
		parts = append(parts, fmt.Sprintf("%s → %s, not this machine (%s)", n, strings.Join(addrs, ", "), d.externalIP()))
		c.Fix = appendFix(c.Fix, "point "+n+" at this machine, or make sure "+strings.Join(addrs, ", ")+" forwards ports 80 and 443 here (NAT)")
	}
	c.Detail = strings.Join(parts, "; ")
}

// certificate checks the certificate the front door serves: the names,
// the dates, whom it chains to.
func (d *doc) certificate(ctx context.Context) {
	c := Check{ID: "certificate", Name: "Certificate", Status: OK}
	defer func() { d.add(c) }()
	a := d.cfg.Access
	names := append([]string{d.externalIP()}, d.names()...)
	now := d.o.Now()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.HTTPSPort))
	var parts []string
	served := false
	for _, n := range names {
		cert, err := d.served(ctx, addr, n)
		if err != nil {
			break // the front door does not answer: look at the files instead
		}
		served = true
		why, fix, st := d.judge(cert, n, now)
		c.Status = worse(c.Status, st)
		parts = append(parts, why)
		c.Fix = appendFix(c.Fix, fix)
	}
	if served {
		c.Detail = "served on " + addr + ": " + strings.Join(parts, "; ")
		return
	}
	// Not served (no daemon): what it will serve.
	if a.CertFile != "" {
		cert, err := readCert(a.CertFile)
		if err != nil {
			c.Status, c.Detail, c.Fix = Fail, err.Error(), "set access.cert_file to your certificate (PEM, full chain)"
			return
		}
		for _, n := range names {
			why, fix, st := d.judge(cert, n, now)
			c.Status = worse(c.Status, st)
			parts = append(parts, why)
			c.Fix = appendFix(c.Fix, fix)
		}
		c.Detail = a.CertFile + ": " + strings.Join(parts, "; ")
		return
	}
	dir, _ := d.cfg.DataDir()
	ca, err := readCert(filepath.Join(dir, "ca", pki.CACertFile))
	switch {
	case err != nil:
		c.Detail = "THON's local CA is made at the first start and issues a certificate for every name; participants trust it from https://" + d.externalIP() + "/ca"
	case ca.NotAfter.Before(now.Add(30 * 24 * time.Hour)):
		c.Status, c.Detail = Warn, "THON's local CA ends "+ca.NotAfter.Format("2006-01-02")
		c.Fix = "move " + filepath.Join(dir, "ca") + " away before the event and let THON make a new CA (participants trust it again)"
	default:
		c.Detail = "THON's local CA (until " + ca.NotAfter.Format("2006-01-02") + ") issues a certificate for every name at the first visit"
	}
	if a.ACME.Enabled() {
		c.Detail += "; ACME gets certificates for " + strings.Join(a.Hostnames, ", ") + " once the daemon runs"
	}
}

// served is the certificate the front door at addr serves for name.
func (d *doc) served(ctx context.Context, addr, name string) (*x509.Certificate, error) {
	dl := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: &tls.Config{ServerName: name, InsecureSkipVerify: true}}
	if ip := net.ParseIP(name); ip != nil {
		dl.Config.ServerName = ""
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := dl.DialContext(cctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs[0], nil
}

// judge says what a certificate is worth for name.
func (d *doc) judge(cert *x509.Certificate, name string, now time.Time) (string, string, Status) {
	if err := cert.VerifyHostname(name); err != nil {
		return name + ": the certificate does not name it", "add " + name + " to access.hostnames (THON's CA and ACME then cover it), or to your own certificate", Fail
	}
	switch left := cert.NotAfter.Sub(now); {
	case left <= 0:
		return name + ": expired " + cert.NotAfter.Format("2006-01-02"), "renew it (THON's and ACME's certificates renew themselves; your own: replace access.cert_file)", Fail
	case left < 7*24*time.Hour:
		return name + ": ends " + cert.NotAfter.Format("2006-01-02 15:04"), "renew it before the event", Warn
	}
	who := "issued by " + cert.Issuer.CommonName
	if roots, err := x509.SystemCertPool(); err == nil {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName(name), CurrentTime: now}); err == nil {
			who = "trusted by browsers (" + cert.Issuer.CommonName + ")"
		}
	}
	if d.o.CAPool != nil {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: d.o.CAPool, DNSName: dnsName(name), CurrentTime: now}); err == nil {
			who = "THON's local CA (participants trust it from /ca)"
		}
	}
	return fmt.Sprintf("%s: %s, until %s", name, who, cert.NotAfter.Format("2006-01-02")), "", OK
}

func dnsName(n string) string {
	if net.ParseIP(n) != nil {
		return ""
	}
	return n
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// llm checks that the LLM server answers, with its model, and its slots.
func (d *doc) llm(ctx context.Context) {
	l := d.cfg.LLM
	c := Check{ID: "llm", Name: "LLM server", Status: OK}
	defer func() { d.add(c) }()
	if !l.Enabled {
		c.Detail = "off (llm.enabled: false): the assistants have no model"
		return
	}
	if l.IsManaged() && !d.o.Daemon {
		c.Status, c.Detail = Warn, "THON runs llama-server when its daemon runs, and it does not run now"
		c.Fix = "start THON (sudo systemctl start thon, or thon run), then run thon doctor again"
		return
	}
	var st llm.Status
	if d.o.LLM != nil {
		st = d.o.LLM(ctx)
	} else {
		n := d.o.Participants
		svc := llm.NewService(l, llm.ServiceOptions{Participants: func(context.Context) (int, error) { return n, nil }})
		st = svc.Status(ctx)
	}
	where := st.Backend
	if st.URL != "" {
		where += " at " + st.URL
	}
	if !st.Reachable {
		c.Status, c.Detail = Fail, where+": "+st.Error
		switch {
		case l.IsManaged():
			c.Fix = "thon llm status says why THON's server does not run"
		case l.Backend == config.BackendLemonade:
			c.Fix = "start Lemonade Server (sudo systemctl start lemond), or set llm.url to where it runs"
		default:
			c.Fix = "start the server at llm.url, or correct llm.url"
		}
		return
	}
	parts := []string{where + " answers"}
	for _, m := range st.Configured {
		if m.Role != "chat" {
			continue
		}
		if !m.Loaded {
			c.Status = worse(c.Status, Warn)
			parts = append(parts, m.Model+" is not loaded")
			c.Fix = appendFix(c.Fix, "load it sized for the event: thon llm load")
		} else {
			parts = append(parts, m.Model+" loaded")
		}
	}
	if st.Slots != nil {
		want := d.o.Participants * max(l.SlotsPerUser, 1)
		if l.MaxSlots > 0 {
			want = min(want, l.MaxSlots)
		}
		parts = append(parts, fmt.Sprintf("%d parallel slots for %d participants", st.Slots.Total, d.o.Participants))
		if st.Slots.Total < want {
			c.Status = worse(c.Status, Warn)
			c.Fix = appendFix(c.Fix, fmt.Sprintf("the plan wants %d slots: thon llm scale (requests beyond the slots wait their turn at the gateway)", want))
		}
	}
	c.Detail = strings.Join(parts, ", ")
}

// disk checks the free space where workspaces and images live.
func (d *doc) disk() {
	c := Check{ID: "disk", Name: "Disk", Status: OK}
	defer func() { d.add(c) }()
	perUser := int64(workspaceAllowance)
	need := int64(d.o.Participants)*perUser + minFree
	var parts []string
	dirs := map[string]string{}
	if dir, err := d.cfg.DataDir(); err == nil {
		dirs["data directory ("+dir+")"] = existingParent(dir)
	}
	if d.host != nil && d.host.RootDir != "" {
		if _, err := os.Stat(d.host.RootDir); err == nil {
			dirs["engine's images and workspaces ("+d.host.RootDir+")"] = d.host.RootDir
		}
	}
	if d.cfg.Sandbox.Workspace == "bind" {
		if wd, err := d.cfg.WorkspaceDir(); err == nil {
			dirs["bind-mounted workspaces ("+wd+")"] = existingParent(wd)
		}
	}
	type fsys struct {
		whats []string
		dir   string
		free  int64
	}
	var found []*fsys
	byID := map[unix.Fsid]*fsys{}
	for _, what := range sortedKeys(dirs) {
		var st unix.Statfs_t
		if err := unix.Statfs(dirs[what], &st); err != nil {
			continue
		}
		if f, ok := byID[st.Fsid]; ok && st.Fsid != (unix.Fsid{}) {
			f.whats = append(f.whats, what) // the same file system
			continue
		}
		f := &fsys{whats: []string{what}, dir: dirs[what], free: int64(st.Bavail) * int64(st.Bsize)}
		byID[st.Fsid] = f
		found = append(found, f)
	}
	for _, f := range found {
		parts = append(parts, fmt.Sprintf("%s free for the %s", gib(f.free), strings.Join(f.whats, " and the ")))
		switch {
		case f.free < minFree:
			c.Status = Fail
			c.Fix = appendFix(c.Fix, "free space on "+f.dir+": THON needs at least "+gib(minFree))
		case f.free < need:
			c.Status = worse(c.Status, Warn)
			c.Fix = appendFix(c.Fix, fmt.Sprintf("%d participants need about %s on %s (%s each for their workspace)", d.o.Participants, gib(need), f.dir, gib(perUser)))
		}
	}
	if len(parts) == 0 {
		c.Detail = "not measured (the engine's disk is not on this machine)"
		return
	}
	c.Detail = strings.Join(parts, "; ")
}

// Disk allowances: a workspace grows with the participant's work; THON
// and the engine need some room of their own.
const (
	workspaceAllowance = 1 << 30
	minFree            = 2 << 30
)

func existingParent(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil || dir == filepath.Dir(dir) {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}

// clock checks that the kernel's clock is kept synchronised (NTP):
// certificates, sign-in tokens and access links carry times.
func (d *doc) clock() {
	c := Check{ID: "clock", Name: "Time sync", Status: OK}
	defer func() { d.add(c) }()
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	switch {
	case err != nil:
		c.Status, c.Detail = Warn, "cannot read the kernel's clock state: "+err.Error()
	case state == unix.TIME_ERROR || tx.Status&unix.STA_UNSYNC != 0:
		c.Status, c.Detail = Warn, "the clock is not synchronised (no NTP)"
		c.Fix = "run a time service: sudo apt-get install -y systemd-timesyncd (or chrony); certificates, sign-ins and links carry times"
	default:
		c.Detail = fmt.Sprintf("synchronised, estimated error %s", time.Duration(tx.Esterror)*time.Microsecond)
	}
}

func appendFix(fix, more string) string {
	switch {
	case more == "" || strings.Contains(fix, more):
		return fix
	case fix == "":
		return more
	}
	return fix + "; " + more
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func gib(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }
func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }
