#!/usr/bin/env bash
# Make Debian's headless Chromium available for the HTML report's browser test where this machine allows
# it (root + apt), and say so plainly where it does not: that test then skips with the reason.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "report browser test: no chromium and no way to install it here; it will be skipped"
  exit 0
fi
echo "installing chromium from Debian's packages"
apt-get update -qq >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
  || echo "report browser test: could not install chromium; it will be skipped"
exit 0
