#!/usr/bin/env bash
# What the Prometheus tests need from Debian: the `prometheus` package (prometheus and promtool binaries).
# The tests run the binary themselves on 127.0.0.1 with a temporary config, so no service is left running:
# a service the package started (systemd or init.d) is stopped and disabled. Idempotent: installs only if missing.
set -euo pipefail
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "ok installed"; then
  SUDO=()
  [[ $(id -u) == 0 ]] || SUDO=(sudo)
  echo "installing prometheus"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    "${SUDO[@]}" systemctl disable --now prometheus
  elif [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
    "${SUDO[@]}" /etc/init.d/prometheus stop
  fi
fi
prometheus --version 2>&1 | head -1
