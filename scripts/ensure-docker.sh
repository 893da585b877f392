#!/usr/bin/env bash
# Make a Docker engine available for the image tests where this machine allows it (root + apt), and
# say so plainly where it does not: those tests then skip with the reason.
set -u
log=${TMPDIR:-/tmp}/batchscoring-dockerd.log
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "image tests: no running Docker engine and not root, so none is started; they will be skipped"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing docker.io and debootstrap from Debian's packages"
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null 2>&1 \
      || echo "image tests: could not install docker.io/debootstrap"
  fi
fi
command -v dockerd >/dev/null 2>&1 || { echo "image tests: no dockerd; they will be skipped"; exit 0; }
for flags in "" "--iptables=false --bridge=none"; do
  # shellcheck disable=SC2086 # flags are words on purpose
  nohup dockerd $flags >"$log" 2>&1 &
  for _ in $(seq 1 30); do
    docker info >/dev/null 2>&1 && { echo "Docker engine started ${flags:+($flags)}"; exit 0; }
    sleep 1
  done
  kill %1 2>/dev/null; wait 2>/dev/null
done
echo "image tests: the Docker engine did not start (see $log); they will be skipped"
exit 0
