#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the browser tests, only when they are missing.
# Needs root (or sudo); uses the machine's Debian mirror. Idempotent and quiet when already installed.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "ensure-chromium: /usr/bin/chromium is missing and this user cannot apt-get install it;" >&2
    echo "  install the Debian packages chromium and chromium-driver as root" >&2
    exit 1
  fi
fi

echo "ensure-chromium: installing Debian chromium and chromium-driver (once per machine)..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version
