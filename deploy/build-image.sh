#!/usr/bin/env bash
# Build deploy/Dockerfile without a Docker daemon (buildah), and optionally smoke-test the
# image: non-root, config check, migrations, both services ready, a streamed call on each
# streaming endpoint and an embedding with the official SDKs, graceful stop.
#
#   deploy/build-image.sh            # build $IMAGE
#   deploy/build-image.sh --smoke    # build, then run it against PostgreSQL and Redis
#
# Environment:
#   IMAGE         tag to build (default localhost/workforce-gateway:dev)
#   LOCAL_BASE=1  for machines that reach PyPI and Debian but no container registry: build
#                 the two base images locally (Debian bookworm's Python 3.11 by debootstrap,
#                 and this machine's uv binary) instead of pulling python:3.11-slim and
#                 ghcr.io/astral-sh/uv. Implies HOST_CA=1.
#   HOST_CA=1     let uv in the builder trust this machine's CA bundle (TLS-inspecting proxy)
#   PG_URL        PostgreSQL server for --smoke (default postgresql://postgres@127.0.0.1:5432)
#   REDIS_URL_SMOKE  Redis for --smoke (default redis://127.0.0.1:6379/15)
#   HOST_PYTHON   the checkout's dev environment, for --smoke's fake upstream and SDK calls
#                 (default .venv/bin/python: `make install`)
# Needs root (buildah's chroot isolation; debootstrap) and `apt-get install buildah`.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/workforce-gateway:dev}
LOCAL_BASE=${LOCAL_BASE:-0}
HOST_CA=${HOST_CA:-$LOCAL_BASE}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
PY_BASE=localhost/wfg-base-python:3.11
UV_BASE=localhost/wfg-uv:0.13.9

command -v buildah >/dev/null || { echo "build-image: needs buildah (apt-get install buildah)" >&2; exit 2; }

local_bases() {
  if ! buildah inspect --type image "$PY_BASE" >/dev/null 2>&1; then
    local rootfs
    rootfs=$(mktemp -d /tmp/wfg-rootfs.XXXXXX)
    echo "build-image: debootstrap Debian bookworm + python3 into $rootfs"
    debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" \
      http://deb.debian.org/debian >/dev/null
    # debootstrap mounts /proc and /sys inside the tree while it runs; never copy or rm -rf
    # a tree that still has something mounted in it
    if findmnt -rn -o TARGET | grep -q "^$rootfs/"; then
      echo "build-image: something is still mounted under $rootfs; left in place" >&2; exit 1
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    local c
    c=$(buildah from scratch)
    buildah copy "$c" "$rootfs" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    buildah commit -q "$c" "$PY_BASE" >/dev/null
    buildah rm "$c" >/dev/null
    rm -rf "$rootfs"
  fi
  if ! buildah inspect --type image "$UV_BASE" >/dev/null 2>&1; then
    local uv_bin c
    # uv on PATH, else the one `make install` put in .venv-tools (the Makefile's fallback)
    uv_bin=$(command -v uv || echo .venv-tools/bin/uv)
    uv_bin=$(readlink -f "$uv_bin")
    [[ -x "$uv_bin" && "$("$uv_bin" --version)" == "uv 0.13.9"* ]] \
      || { echo "build-image: need uv 0.13.9 on PATH or in .venv-tools (make install)" >&2; exit 2; }
    c=$(buildah from scratch)
    buildah copy "$c" "$uv_bin" /uv >/dev/null
    buildah commit -q "$c" "$UV_BASE" >/dev/null
    buildah rm "$c" >/dev/null
  fi
}

build() {
  local args=(--format docker --layers -f deploy/Dockerfile -t "$IMAGE")
  if [[ "$LOCAL_BASE" == 1 ]]; then
    local_bases
    args+=(--build-arg "PYTHON_IMAGE=$PY_BASE" --build-arg "UV_IMAGE=$UV_BASE")
  fi
  if [[ "$HOST_CA" == 1 ]]; then
    args+=(-v /etc/ssl/certs:/etc/ssl/certs:ro --build-arg UV_SYSTEM_CERTS=true)
  fi
  echo "build-image: buildah bud ${args[*]} ."
  local before after
  before=$(buildah containers -q | sort)
  buildah bud "${args[@]}" .
  # buildah 1.28 leaves a working container behind for each `COPY --from=<image>` stage
  after=$(buildah containers -q | sort)
  comm -13 <(echo "$before") <(echo "$after") | xargs -r buildah rm >/dev/null
  echo "build-image: built $IMAGE in ${SECONDS}s"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

smoke() {
  # globals, not locals: the EXIT trap runs after this function returns
  pg=${PG_URL:-postgresql://postgres@127.0.0.1:5432}
  db="wfg_image_smoke_$$"
  pids=()         # the image's two services
  upstream_pid=""  # the fake upstream on the host: stopped by cleanup, not part of the stop check
  gw_port=$(free_port)
  portal_port=$(free_port)
  logdir=$(mktemp -d /tmp/wfg-image-smoke.XXXXXX)
  c=$(buildah from "$IMAGE")
  cleanup() {
    set +e
    for pid in "${pids[@]:-}"; do
      if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    done
    if [[ -n "$upstream_pid" ]]; then kill -TERM "$upstream_pid" 2>/dev/null; wait "$upstream_pid" 2>/dev/null; fi
    buildah rm "$c" >/dev/null 2>&1
    psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
  }
  trap cleanup EXIT
  psql "$pg/postgres" -qc "CREATE DATABASE $db" >/dev/null
  local env=(-e "DATABASE_URL=$pg/$db" -e "REDIS_URL=${REDIS_URL_SMOKE:-redis://127.0.0.1:6379/15}"
             -e WFG_ENV=production -e "GATEWAY_PORT=$gw_port" -e "PORTAL_PORT=$portal_port"
             # production refuses to start without mail and a /metrics token (no mail is sent)
             -e SMTP_URL=smtp://127.0.0.1:1 -e "METRICS_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')")

  # The providers: the fake upstream on this host (tests/fakes/upstream), so the image's
  # gateway answers real calls; each `"NAME": "value"` line it prints becomes `-e NAME=value`.
  "${HOST_PYTHON:-.venv/bin/python}" -m tests.fakes.upstream >"$logdir/upstream.json" 2>&1 &
  upstream_pid=$!
  for _ in $(seq 1 60); do grep -q '}' "$logdir/upstream.json" 2>/dev/null && break; sleep 1; done
  while IFS= read -r line; do env+=(-e "$line"); done < <(
    sed -n 's/^ *"\([A-Z_]*\)": "\(.*\)",\{0,1\}$/\1=\2/p' "$logdir/upstream.json")

  local uid
  uid=$(buildah run "$c" -- id -u)
  [[ "$uid" != 0 ]] || { echo "smoke: the image runs as root" >&2; exit 1; }
  echo "smoke: runs as uid $uid"
  buildah run "${env[@]}" "$c" -- gateway-admin config check
  buildah run "${env[@]}" "$c" -- gateway-admin db upgrade

  buildah run "${env[@]}" "$c" -- gateway-admin serve gateway >"$logdir/gateway.log" 2>&1 &
  pids+=($!)
  buildah run "${env[@]}" "$c" -- gateway-admin serve portal >"$logdir/portal.log" 2>&1 &
  pids+=($!)
  local service port ready
  for service in gateway portal; do
    port=$gw_port; [[ $service == portal ]] && port=$portal_port
    ready=0
    for _ in $(seq 1 120); do
      if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=2)" 2>/dev/null; then
        ready=1; break
      fi
      sleep 1
    done
    [[ $ready == 1 ]] || { echo "smoke: $service never became ready" >&2; tail -n 30 "$logdir/$service.log" >&2; exit 1; }
    buildah run "${env[@]}" "$c" -- python /usr/local/bin/wfg-healthcheck "$service" /readyz
    echo "smoke: $service ready on :$port (healthz and readyz 200, wfg-healthcheck ok)"
  done

  # What ships must serve what is tested: a streamed call on each streaming endpoint (the
  # production set once lacked a module a streamed /v1/messages call needs) and an embedding.
  local email="smoke-$$@example.com" token
  buildah run "${env[@]}" "$c" -- gateway-admin users create --email "$email" --name Smoke --verified >/dev/null
  buildah run "${env[@]}" "$c" -- gateway-admin credits grant --email "$email" --amount 5 --reason smoke >/dev/null
  token=$(buildah run "${env[@]}" "$c" -- gateway-admin tokens create --email "$email" --name smoke | tail -n 1)
  "${HOST_PYTHON:-.venv/bin/python}" -m tests.deploy.image_calls "http://127.0.0.1:$gw_port" "$token" \
    || { echo "smoke: a call through the image failed" >&2; tail -n 30 "$logdir/gateway.log" >&2; exit 1; }

  # Graceful stop: SIGTERM to the service's `gateway-admin serve` process, which must exit.
  local serve_pid
  for serve_pid in $(pgrep -f "^/app/.venv/bin/python /app/.venv/bin/gateway-admin serve" || true); do
    if grep -q "GATEWAY_PORT=$gw_port" "/proc/$serve_pid/environ" 2>/dev/null; then
      kill -TERM "$serve_pid"
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then echo "smoke: a service did not stop on SIGTERM" >&2; exit 1; fi
  done
  pids=()
  grep -q "Finished server process" "$logdir/gateway.log" \
    || { echo "smoke: the gateway did not shut down cleanly" >&2; tail -n 30 "$logdir/gateway.log" >&2; exit 1; }
  echo "smoke: both services stopped on SIGTERM; image $IMAGE ok (${SECONDS}s in all)"
  rm -rf "$logdir"
}

build
[[ "${1:-}" == "--smoke" ]] && smoke
exit 0
