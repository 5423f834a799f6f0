#!/usr/bin/env bash
# bench/setup.sh: install the contenders and load generators from Debian's
# packages. Idempotent: a no-op when everything is already there.
# Needs root (apt-get). Leaves no nginx/haproxy service running on the
# default ports: the benchmark starts its own instances with its own configs.
set -euo pipefail

need=()
command -v nginx   >/dev/null 2>&1 || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v wrk     >/dev/null 2>&1 || need+=(wrk)
command -v h2load  >/dev/null 2>&1 || need+=(nghttp2-client)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl    >/dev/null 2>&1 || need+=(curl)
command -v ss      >/dev/null 2>&1 || need+=(iproute2)
command -v pgrep   >/dev/null 2>&1 || need+=(procps)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  # Keep the packages' maintainer scripts from starting the services:
  # policy-rc.d exit 101 = "action forbidden" for invoke-rc.d. Only created
  # when absent, and removed afterwards.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy_created=1
  fi
  trap '[ "$policy_created" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
else
  echo "setup: nginx, haproxy, wrk, h2load already installed"
fi

# Whatever happened at install time (or on an earlier run), stop and disable
# the system services so nothing listens on :80 or holds the binaries' pid files.
for svc in nginx haproxy; do
  if command -v systemctl >/dev/null 2>&1; then
    # works without a running systemd too (only removes the wants/ links)
    $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
  elif command -v service >/dev/null 2>&1; then
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  fi
done
# A daemon started by an init script without systemd: stop it by its pid file.
for pidf in /run/nginx.pid /run/haproxy.pid; do
  if [ -s "$pidf" ]; then
    pid=$(cat "$pidf")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then $SUDO kill "$pid" 2>/dev/null || true; fi
  fi
done

# wrk and h2load take the TLS server name (SNI) from the URL's host, so the
# benchmark's hostnames must resolve, to loopback only. One marked line.
names="test.acme.com a.test.acme.com b.test.acme.com"
for k in $(seq 0 19); do names="$names g$k.test.acme.com"; done
if ! grep -q '# edged-bench$' /etc/hosts; then
  echo "127.0.0.1 $names # edged-bench" | $SUDO tee -a /etc/hosts >/dev/null
  echo "setup: added the benchmark's hostnames (127.0.0.1) to /etc/hosts"
fi

nginx -v 2>&1 | sed 's/^/setup: /'
haproxy -v 2>&1 | head -1 | sed 's/^/setup: /'
echo "setup: wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(h2load --version 2>&1 | head -1)"
