// Package browser holds end-to-end tests of THON's HTTPS front door driven
// by a real headless Chromium (Debian's chromium, through chromedp): a real
// daemon, the real Docker engine and the test IDE image (test/sandboxd), real
// TLS with THON's own CA, real cookies and real WebSockets opened by page
// JavaScript.
//
// The tests fail, they do not skip, when Docker or Chromium is missing: a
// green run must mean a browser went through the front door.
package browser
