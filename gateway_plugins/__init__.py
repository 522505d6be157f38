"""Thin adapters from LiteLLM's proxy hooks to the domain code in `portal/`.

- `server`      builds and runs the proxy app (keeps DATABASE_URL away from LiteLLM)
- `auth`        custom_auth: gateway token -> user, or a 401/403 with an OpenAI-style body
- `metering`    reserve credits before a call, settle usage + debit after it
- `payload_scrubbing` keeps content out of LiteLLM's logging payloads
- `log_scrubbing` keeps content out of log records (LiteLLM's own included)
- `proxy_errors` maps the domain's exception tree onto LiteLLM's ProxyException
- `runtime`     the per-process state those hooks share (database, config, spool, cache)
- `rate_limits` per-plan RPM/TPM/in-flight limits, enforced by LiteLLM's limiter via Redis
- `metrics`     Prometheus metrics of calls, refusals, credits, latency (`/metrics`)
- `shutdown`    calls in flight and their settlements, drained on SIGTERM
- `estimates`   sizing a reservation (input tokens + output allowance, priced)
- `stream_tally` counts what a stream sent (never the text), to meter cut streams

No SQL lives here.
"""
