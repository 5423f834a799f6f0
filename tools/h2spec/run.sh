#!/usr/bin/env bash
# Runs h2spec (generic, RFC 7540, HPACK) against a real edged over TLS:
# a throw-away config serving "localhost" on 127.0.0.1:19443 in front of
# the demo backend. h2spec is a development tool, fetched through the Go
# module proxy by `go run` (not a dependency of the module).
#
#   tools/h2spec/run.sh [h2spec args, e.g. http2/4.2 -v]
#
# The README's Security section lists the cases that fail and why.
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
H2SPEC=${H2SPEC:-github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible}
port=${H2SPEC_PORT:-19443}
backend=${H2SPEC_BACKEND:-127.0.0.1:19081}

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/conf" "$work/certs" "$work/state"
cat > "$work/conf/h2spec.toml" <<TOML
[server]
https = "127.0.0.1:$port"
admin = ""
state_dir = "../state"
default_virtual_host = "h2spec"

[[environment]]
name = "h2spec"

[[env_group]]
name = "h2spec"
hostnames = ["localhost"]
environments = ["h2spec"]

[[virtual_host]]
name = "h2spec"
cert_file = "../certs/h2spec.pem"
key_file = "../certs/h2spec.key"

[[proxy]]
name = "all"
environment = "h2spec"
base_path = "/"
target = "http://$backend"
TOML
$GO run ./tools/devcerts -c "$work/conf" -dir "$work/certs" >/dev/null
$GO build -o "$work/edged" ./cmd/edged
$GO build -o "$work/demo-backend" ./tools/demo-backend
"$work/demo-backend" -listen "$backend=h2spec" >"$work/backend.log" 2>&1 &
pids+=($!)
"$work/edged" serve -c "$work/conf" >"$work/edged.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	sleep 0.1
done
$GO run "$H2SPEC" -h localhost -p "$port" -t -k "$@"
