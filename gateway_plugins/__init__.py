"""The gateway: our ASGI app around LiteLLM's Router, used as a library.

Read `pipeline` first: it runs the steps of every metered call in order.

- `app`            the routes (exactly the metered endpoints + health + metrics), lifespan
- `server`         the process: uvicorn, environment, logging
- `pipeline`       authenticate + limit → validate → reserve → call → meter → settle → answer
- `call`           one admitted call as the steps hand it on, and its `x-litellm-call-id`
- `admission`      token check and limits together (one Redis round trip when cached)
- `auth`           where a gateway token is checked (Bearer or x-api-key)
- `validation`     one allow-listed request model per endpoint; `content_rules` what a
                   request may carry inside (parts, tools, references), `targets` which
                   providers a model may reach, `cors` the API routes' preflight
- `rate_limits`    per-plan RPM / TPM / calls in flight (one Lua script in Redis, or
                   in-process counters without Redis)
- `reservation`    where credits are held before a call (and the overspend bound);
                   `token_counting` and `input_bounds` what a call is reserved for
- `upstream`       the Router call under one deadline; a client leaving cancels nothing
- `streaming`      a streamed answer settled before its final event, ended honestly
- `stream_formats` SSE in OpenAI chat/text, Anthropic Messages and Responses format
- `metering`       usage and price of what was answered
- `settlement`     usage row + debit committed (or spooled) before the last byte
- `charges`        what a call cost, in the answer itself (`usage.cost`, x-credits-charged)
- `calls`          `GET /v1/calls/{id}`: one call's usage row, for the token that made it
- `catalog`        `/v1/models`: each model's prices, context length and output cap
- `litellm_bridge` every LiteLLM detail we rely on, one module each (the only importer
                   of LiteLLM); `bridge_switches` its bench-only A/B switch
- `errors`         refusals and failures as OpenAI- or Anthropic-style error bodies
- `background`     spool replay and expiry of holds left by dead processes
- `breaker`        the circuit breaker on PostgreSQL and Redis (deadlines, /readyz)
- `sockets`        a deadline on request headers (slow clients cannot hold sockets)
- `loop_lag`       how long a ready call waits for the event loop, GC pauses (metrics)
- `fairness`       long streams' relay yields sooner while other calls are served
- `fast_paths`     the hand-written paths kept past the libraries, and their A/B switch
- `ab_switches`    how the A/B switches are read (bench only)
- `warmup`         what LiteLLM imports lazily, imported before the gateway is ready
- `count_tokens`, `response_ids`, `heap`, `inflight`, `metrics`, `log_scrubbing`, `runtime`

No SQL lives here: the domain code in `portal/` owns the data.
"""
