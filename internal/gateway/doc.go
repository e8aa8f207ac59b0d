// Package gateway is THON's OpenAI-compatible AI gateway: it authenticates a
// participant's (or group's) key, applies token-based rate limits, forwards
// the request to the configured model server with the server's own key, and
// accounts the usage the server reports.
//
// # Routes
//
// POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings and
// GET /v1/models. The upstream base URL replaces the "/v1" prefix, so an
// upstream of http://127.0.0.1:13305/api/v1 receives
// /api/v1/chat/completions. Anything else is answered with an OpenAI-shaped
// 404 (unknown route) or 405 (known route, wrong method).
//
// # Keys
//
// Clients send `Authorization: Bearer thon_…`. A key found in another header
// (api-key, x-api-key, …) is refused with a 401 that names the header and the
// fix; it is never used. Keys that do not start with "thon_" are refused
// without a store lookup. Lookups are cached for Options.KeyCacheTTL (default
// 5 s, unknown keys included), so a revoked or rotated key stops working
// within that time on every replica; call Gateway.ForgetKeys after a
// revoke or rotate to make it immediate on this one. Counters belong to
// Key.ID, not to the secret, so rotating a key keeps its usage.
//
// # Limits
//
// Every limit is per key, 0 means none, and all of them are multiplied by
// Key.Scale (per-group mode: the group's size; otherwise 1):
//
//   - RequestsPerMinute: admitted requests per window.
//   - TokensPerMinute: tokens of Limits.TokenKind (total, prompt or
//     completion) charged per window.
//   - Concurrency: requests in flight at once.
//   - BudgetTokens: tokens of TokenKind for the whole event. The counter
//     starts at Key.BudgetUsed (the store's sum) when larger than what the
//     gateway counted, and in Redis it never expires.
//
// Windows are fixed, aligned to the minute (UTC) of Options.Now. A request
// is admitted when what is already used is below each limit and a
// concurrency slot is free; the slot is reserved atomically with the check.
// The upstream's real `usage` is charged when the response ends, to the
// window current at that moment. Hence, with a token limit of N, a window
// never holds more than N plus the tokens of the requests in flight when the
// limit was reached — at most one request per concurrency slot.
// Rejected requests do not count; a request that failed because the
// upstream is down (502/504) or answered 5xx or 429 is refunded.
//
// # Per-model limits and priority
//
// An Options.Models entry adds, for requests naming that model, a
// per-key Concurrency and TokensPerMinute on top of the key-wide limits (a
// request must pass both; a model limit can only tighten, never loosen, the
// key's). Priority orders the waiting line: when a request finds one of its
// key's concurrency limits full (key-wide or the model's), it waits up to
// Options.QueueTimeout (default 5 s, at most Options.QueueLength waiters per
// key, default 16) instead of failing at once. A freed slot goes to the
// waiting request whose model has the highest Priority, first come first
// served among equals; a newcomer never overtakes a waiter of higher
// priority. Priority never lets a request past a limit, and requests that
// fail a rate or budget limit are refused at once. With Redis, slots freed by
// other replicas are noticed by polling every 50 ms.
//
// # Slots and the fair queue
//
// A model has slots at the upstream (Options.UpstreamSlots for every model,
// SetSlots per model from THON's LLM plan; 0: no limit), and the gateway
// never has more of its requests in flight than that. A request that passed
// its key's limits (above) waits for a slot in the model's queue, holding its
// key's concurrency slot. A freed slot goes to the waiter whose key has the
// fewest requests holding the model's slots, then the least decayed use of
// the model (completion tokens plus a tenth of the prompt tokens, each
// request's fading with a time constant of fairTau, a minute; kept as the log
// of a forward-decayed sum, so keys compare alike at any time and on every
// replica), then the earliest arrival. ShortShare of the slots (rounded,
// never all) are kept for short requests: embeddings, and those asking for at
// most ShortMaxTokens tokens; long requests never take them. A request that
// waits longer than ModelQueueTimeout (default 2 min) is answered 503
// model_queue_timeout with Retry-After; one whose client leaves while it
// waits leaves at once and is refunded. Nothing is written to a client
// before its request has a slot.
//
// # Rejections
//
// Every answer to a request that reached the limiter (served, refused
// by a limit, or failed upstream) and to /v1/models carries
// X-RateLimit-Limit-Requests, X-RateLimit-Remaining-Requests,
// X-RateLimit-Reset-Requests and the same three for tokens (OpenAI's names;
// the tokens headers show the tighter of the key-wide and the model limit);
// a limit of 0 sends no header. Rate and concurrency rejections are 429 with
// code "rate_limit_exceeded" and Retry-After. An exhausted budget is 429 too,
// with type "insufficient_quota" and code "budget_exhausted" — the status
// OpenAI uses for an exhausted quota, which every client already handles —
// plus `X-Should-Retry: false` so SDKs do not retry. A model outside
// Options.AllowedModels is 403 "model_not_allowed"; /v1/models lists only
// allowed models.
//
// # Streaming
//
// SSE responses are passed through event by event, flushed once per burst.
// When the client did not set stream_options.include_usage, the gateway sets
// it upstream and removes the resulting usage-only chunk (empty choices) from
// what the client sees; with Options.LlamaCppTimings it also sets
// llama-server's timings_per_token, so that every chunk counts the prompt
// (prompt_n + cache_n) and the tokens generated so far (predicted_n). A
// stream is tied to its client: when the client disconnects, the upstream
// request is cancelled (llama-server then stops generating and frees its
// slot) and what was generated is charged: from the last timings when there
// are some, else one completion token per chunk with text and the prompt
// estimated from the request's size (4 bytes a token); the same count is
// used when a stream ends without usage. Non-streaming requests are detached
// from the client (llama-server finishes them anyway) and charged their real
// usage. Every upstream request is bounded by Options.UpstreamTimeout
// (default 10 min) and ends when the gateway closes.
//
// # Counters and Redis
//
// Counters live in memory unless Options.Redis is set; then every gateway on
// that Redis shares them. Two Lua scripts keep each admission and each
// charge atomic. Keys (P = Options.RedisPrefix, default "thon:gw:"; K =
// Key.ID; W = minutes since the Unix epoch; M = model):
//
//	P{K}:r:W      requests admitted in window W     (expires after 2 windows)
//	P{K}:t:W      tokens charged in window W        (expires after 2 windows)
//	P{K}:b        budget tokens spent               (never expires)
//	P{K}:c        in-flight leases (sorted set, score = lease deadline in ms)
//	P{K}:m:M:t:W  tokens of model M in window W     (only for models with a limit)
//	P{K}:m:M:c    in-flight leases of model M
//	P{slots:M}:l  leases of model M's upstream slots (sorted set, deadlines)
//	P{slots:M}:g  those of requests that are not short
//	P{slots:M}:c  each replica's best waiter for M (hash: a candidate)
//	Pslots:free   a channel: the model whose slot was just released
//
// Every replica keeps its own fair queue per model and competes for the
// shared slots through its best waiter: it takes a free slot only when no
// more live candidates of other replicas come before that waiter than there
// are free slots (see slots_redis.go), which merges the replicas' queues up to
// what each knows of its keys' use. While Redis is down, FailOpen serves the
// queues from each replica's own count of the slots (up to replicas × slots
// at once), and fail-closed answers their waiters 503 at once.
//
// The {K} hash tag keeps one key's counters in one Redis Cluster slot. A
// lease lasts 60 s and is renewed every 20 s while its request runs, so the
// slots of a crashed replica free themselves. When Redis does not answer,
// FailOpen (the default) serves with this replica's local counters and logs
// once per outage; fail-closed answers 503 "rate_limiter_unavailable". A
// probe notices Redis coming back (within a second) and shared counting
// resumes; requests admitted during the outage finish on the local counters.
//
// # Usage
//
// Options.Usage receives per-minute aggregates per key and model (requests,
// prompt and completion tokens, rejections), flushed every second from a
// buffer off the request path; when the buffer is full records are dropped
// and counted (thon_gateway_usage_dropped_total). Close flushes the rest.
//
// # Metrics
//
// thon_gateway_requests_total{endpoint,code},
// thon_gateway_tokens_total{model,kind},
// thon_gateway_rejections_total{reason},
// thon_gateway_upstream_latency_seconds{endpoint} (time to the upstream's
// response headers), thon_gateway_in_flight, thon_gateway_redis_up, and per
// model thon_gateway_model_slots{model}, thon_gateway_model_slots_busy{model},
// thon_gateway_model_queue_length{model,group} and the histogram
// thon_gateway_model_queue_wait_seconds{model,group}. Model labels are
// limited to the first 64 distinct models, group labels to 256; the rest are
// "other". Gateway.QueueStats is the same for live pages.
package gateway
