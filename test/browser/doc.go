// Package browser holds end-to-end tests of THON's HTTPS front door driven
// by a real headless Chromium (Debian's chromium, through chromedp): a real
// daemon, the real Docker engine and the test IDE image (test/sandboxd), real
// TLS with THON's own CA, real cookies and real WebSockets opened by page
// JavaScript. As root, the browser runs in a network namespace of its own
// and reaches the host through a SOCKS proxy of the test process, so that
// Docker's interfaces coming and going do not abort its requests
// (netns_test.go).
//
// The tests fail, they do not skip, when Docker or Chromium is missing: a
// green run must mean a browser went through the front door. One test is
// opt-in: TestCodeServerWorkbench drives the real participant image (VS Code
// in the browser), built offline first when it is missing (minutes); it
// runs with THON_E2E_IMAGE=1, which CI (.ci/run) sets.
package browser
