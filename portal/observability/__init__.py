"""What operators watch, shared by the gateway and the portal. Nothing here may carry
request content: labels are bounded sets, log text is ours or withheld.

- `context`    the request id (and LiteLLM call id) of the request being served
- `middleware` an ASGI middleware that sets that context and times each request
- `logging`    JSON or text log lines with the request id; LiteLLM's loggers routed in
- `metrics`    the Prometheus registry (multiprocess-safe) and its exposition
- `readiness`  the dependency checks behind `/readyz` (database, Redis)
- `portal`     the portal's `/metrics` route and HTTP metrics
"""
