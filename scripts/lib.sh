# Shared by the scripts (sourced): failures that say what failed, and waits with a deadline.
# shellcheck shell=bash

die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# wait_for_http URL SECONDS WHAT [LOG]: until URL answers 2xx, or fail naming WHAT (and the
# tail of LOG, where the server wrote why it did not come up).
wait_for_http() {
  local url=$1 seconds=$2 what=$3 log=${4:-} deadline=$((SECONDS + $2))
  until curl -sf -o /dev/null --max-time 5 "$url"; do
    if ((SECONDS >= deadline)); then
      [[ -n "$log" && -f "$log" ]] && { echo "--- $log (tail)" >&2; tail -n 30 "$log" >&2; }
      die "$what did not answer $url within ${seconds}s"
    fi
    sleep 0.2
  done
}

# json_field JSON FILTER WHAT: one value from a JSON document, or fail saying what was missing.
json_field() {
  local value
  value=$(jq -er "$2" <<<"$1" 2>/dev/null) || die "$3: no $2 in the answer: ${1:0:300}"
  printf '%s' "$value"
}

# guest_token BASE: a guest token from a running server.
guest_token() {
  local answer
  answer=$(curl -sS -X POST "$1/auth/guest") || die "POST $1/auth/guest failed"
  json_field "$answer" .access_token "guest sign-in at $1"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
