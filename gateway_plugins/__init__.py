"""The gateway: our ASGI app around LiteLLM's Router, used as a library.

Read `pipeline` first: it runs the steps of every metered call in order.

- `app`            the routes (exactly the metered endpoints + health + metrics), lifespan
- `server`         the process: uvicorn, environment, logging
- `pipeline`       authenticate → validate → limit → reserve → call → meter → settle → answer
- `auth`           where a gateway token is checked (Bearer or x-api-key)
- `validation`     one allow-listed request model per endpoint
- `rate_limits`    per-plan RPM / TPM / calls in flight (one Lua script in Redis, or
                   in-process counters without Redis)
- `reservation`    where credits are held before a call (and the overspend bound)
- `upstream`       the Router call under one deadline, cancelled when the client leaves
- `streaming`      a streamed answer settled before its final event, ended honestly
- `stream_formats` SSE in OpenAI chat/text, Anthropic Messages and Responses format
- `metering`       usage and price of what was answered
- `settlement`     usage row + debit committed (or spooled) before the last byte
- `litellm_bridge` every LiteLLM detail we rely on, one module each (the only importer
                   of LiteLLM); `bridge_switches` its bench-only A/B switch
- `errors`         refusals and failures as OpenAI- or Anthropic-style error bodies
- `background`     spool replay and expiry of holds left by dead processes
- `inflight`, `metrics`, `log_scrubbing`, `runtime`

No SQL lives here: the domain code in `portal/` owns the data.
"""
