package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// window is the length of every rate-limit window.
const window = time.Minute

// Token kinds: which tokens of a response count against TokensPerMinute and
// BudgetTokens.
const (
	TokensTotal      = "total"
	TokensPrompt     = "prompt"
	TokensCompletion = "completion"
)

// Limits apply to each key (times Key.Scale); 0 means no limit.
type Limits struct {
	RequestsPerMinute int
	Concurrency       int
	TokensPerMinute   int
	// TokenKind is total (default), prompt or completion.
	TokenKind string
	// BudgetTokens is the whole event's allowance of TokenKind tokens.
	BudgetTokens int64
}

// ModelLimit adds per-key limits for requests naming Model, on top of the
// key-wide Limits (both must pass). Priority orders requests that wait for
// a concurrency slot: higher first (see the package documentation).
type ModelLimit struct {
	Model           string
	Concurrency     int
	TokensPerMinute int
	Priority        int
}

// reason is why a request was refused.
type reason uint8

const (
	reasonNone reason = iota
	reasonBudget
	reasonRequests
	reasonTokens
	reasonModelTokens
	reasonConcurrency
	reasonModelConcurrency
)

var reasonNames = [...]string{"", "budget", "requests", "tokens", "model_tokens", "concurrency", "model_concurrency"}

func (r reason) String() string { return reasonNames[r] }

func (r reason) concurrency() bool { return r == reasonConcurrency || r == reasonModelConcurrency }

// plan is what one admission checks: the limits of a key for a model,
// already scaled. 0 means no limit.
type plan struct {
	keyID  string
	model  string // "" when the model has no limits of its own
	rpm    int64
	conc   int64
	tpm    int64
	budget int64
	mconc  int64
	mtpm   int64
	prio   int
}

// verdict is a counter store's answer: admitted or why not, and the usage
// seen while deciding (for the X-RateLimit headers).
type verdict struct {
	ok       bool
	reason   reason
	requests int64 // admitted in the window, this one included
	tokens   int64 // charged in the window
	mtokens  int64 // charged for the model in the window
	spent    int64 // budget tokens spent
}

// ticket is an admitted request's reservation, returned to the store that
// issued it when the request ends.
type ticket struct {
	store counterStore
	keyID string
	model string
	win   int64 // window of admission, for refunds
	lease string
	conc  bool // a key-wide slot was reserved
	mconc bool // a model slot was reserved
	mtpm  bool // the model's tokens are counted
}

func windowOf(t time.Time) int64 { return t.UnixNano() / int64(window) }

// untilReset is the time left in t's window.
func untilReset(t time.Time) time.Duration {
	n := t.UnixNano()
	return time.Duration(int64(window) - n%int64(window))
}

func (g *Gateway) planFor(k *Key, model string) plan {
	s := int64(k.Scale)
	l := &g.opts.Limits
	p := plan{keyID: k.ID, rpm: int64(l.RequestsPerMinute) * s, conc: int64(l.Concurrency) * s,
		tpm: int64(l.TokensPerMinute) * s, budget: l.BudgetTokens * s}
	if m, ok := g.models[model]; ok {
		p.model = model
		p.mconc = int64(m.Concurrency) * s
		p.mtpm = int64(m.TokensPerMinute) * s
		p.prio = m.Priority
	}
	return p
}

func (g *Gateway) tokensOf(u tokenUsage) int64 {
	switch g.opts.Limits.TokenKind {
	case TokensPrompt:
		return u.prompt
	case TokensCompletion:
		return u.completion
	}
	return u.prompt + u.completion
}

// Canonical header names, set directly to skip canonicalisation.
const (
	hLimitReq   = "X-Ratelimit-Limit-Requests"
	hRemainReq  = "X-Ratelimit-Remaining-Requests"
	hResetReq   = "X-Ratelimit-Reset-Requests"
	hLimitTok   = "X-Ratelimit-Limit-Tokens"
	hRemainTok  = "X-Ratelimit-Remaining-Tokens"
	hResetTok   = "X-Ratelimit-Reset-Tokens"
	hBudget     = "X-Thon-Budget-Remaining-Tokens"
	hRetryAfter = "Retry-After"
	hNoRetry    = "X-Should-Retry"
)

// setLimitHeaders writes the X-RateLimit headers for a verdict.
func setLimitHeaders(h http.Header, p *plan, v *verdict, now time.Time) {
	reset := ""
	if p.rpm > 0 || p.tpm > 0 || p.mtpm > 0 {
		reset = untilReset(now).Round(time.Millisecond).String()
	}
	if p.rpm > 0 {
		h[hLimitReq] = []string{strconv.FormatInt(p.rpm, 10)}
		h[hRemainReq] = []string{strconv.FormatInt(max(p.rpm-v.requests, 0), 10)}
		h[hResetReq] = []string{reset}
	}
	if p.tpm > 0 || p.mtpm > 0 {
		limit, remain := p.tpm, p.tpm-v.tokens
		if p.mtpm > 0 && (p.tpm == 0 || p.mtpm-v.mtokens < remain) {
			limit, remain = p.mtpm, p.mtpm-v.mtokens
		}
		h[hLimitTok] = []string{strconv.FormatInt(limit, 10)}
		h[hRemainTok] = []string{strconv.FormatInt(max(remain, 0), 10)}
		h[hResetTok] = []string{reset}
	}
	if p.budget > 0 {
		h[hBudget] = []string{strconv.FormatInt(max(p.budget-v.spent, 0), 10)}
	}
}

// rejection is the answer to a refused request.
func rejection(p *plan, v *verdict, now time.Time, h http.Header) apiError {
	e := apiError{status: http.StatusTooManyRequests, code: "rate_limit_exceeded"}
	retry := int64((untilReset(now) + time.Second - 1) / time.Second)
	switch v.reason {
	case reasonBudget:
		h[hNoRetry] = []string{"false"}
		return apiError{http.StatusTooManyRequests, typeQuota, "budget_exhausted",
			fmt.Sprintf("Your token budget for this event (%d tokens) is used up. Ask the organizer to raise it.", p.budget)}
	case reasonRequests:
		e.typ = "requests"
		e.message = fmt.Sprintf("Rate limit reached: %d requests per minute. Try again in %d s.", p.rpm, retry)
	case reasonTokens:
		e.typ = "tokens"
		e.message = fmt.Sprintf("Rate limit reached: %d tokens per minute. Try again in %d s.", p.tpm, retry)
	case reasonModelTokens:
		e.typ = "tokens"
		e.message = fmt.Sprintf("Rate limit reached for model %s: %d tokens per minute. Try again in %d s.", p.model, p.mtpm, retry)
	case reasonConcurrency:
		retry = 1
		e.typ = "concurrent_requests"
		e.message = fmt.Sprintf("Too many requests at once: at most %d in flight. Wait for one to finish.", p.conc)
	case reasonModelConcurrency:
		retry = 1
		e.typ = "concurrent_requests"
		e.message = fmt.Sprintf("Too many requests at once for model %s: at most %d in flight. Wait for one to finish.", p.model, p.mconc)
	}
	h[hRetryAfter] = []string{strconv.FormatInt(max(retry, 1), 10)}
	return e
}
