#!/usr/bin/env bash
# Make sure a Docker engine answers, and the host's apt cache for the lab runs.
# Installs docker.io (and apt-cacher-ng) from Debian when missing and starts the
# daemons in the background: the lab machines have no systemd.
set -euo pipefail

log_dir=${TEAMFLOW_LAB_LOG_DIR:-/var/log/teamflow-lab}
mkdir -p "$log_dir"

apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null; then
    echo "ensure-engine: installing docker.io" >&2
    apt_install docker.io
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "ensure-engine: starting dockerd (log: $log_dir/dockerd.log)" >&2
    nohup dockerd >>"$log_dir/dockerd.log" 2>&1 &
    for _ in $(seq 60); do
      docker info >/dev/null 2>&1 && break
      sleep 1
    done
  fi
  docker info >/dev/null 2>&1 || { echo "ensure-engine: dockerd does not answer; see $log_dir/dockerd.log" >&2; exit 1; }
fi

# apt-cacher-ng on :3142 lets every lab container fetch a package from Debian once.
# The lab image's apt asks for it and goes direct when it is not there.
if [ "${TEAMFLOW_LAB_APT_CACHE:-1}" = 1 ] && ! (exec 3<>/dev/tcp/127.0.0.1/3142) 2>/dev/null; then
  command -v apt-cacher-ng >/dev/null || apt_install apt-cacher-ng
  mkdir -p /var/cache/apt-cacher-ng /var/log/apt-cacher-ng /run/apt-cacher-ng
  chown -R apt-cacher-ng:apt-cacher-ng /var/cache/apt-cacher-ng /var/log/apt-cacher-ng /run/apt-cacher-ng 2>/dev/null || true
  echo "ensure-engine: starting apt-cacher-ng on :3142" >&2
  # Debian's backend list names ftp.debian.org; fetch from the mirror the host uses.
  setsid apt-cacher-ng -c /etc/apt-cacher-ng ForeGround=0 \
    pidfile=/run/apt-cacher-ng/pid SocketPath=/run/apt-cacher-ng/socket \
    "Remap-debrep=file:deb_mirror*.gz /debian ; ${TEAMFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}/" \
    >>"$log_dir/apt-cacher-ng.log" 2>&1 || true
  for _ in $(seq 10); do
    (exec 3<>/dev/tcp/127.0.0.1/3142) 2>/dev/null && break
    sleep 0.5
  done
fi

# Lab containers share this kernel and cannot change its settings (read-only
# /proc/sys). Give it what teamflow.platform.redis sets on a real host; the role
# checks the values from inside the container.
if [ "$(cat /proc/sys/vm/overcommit_memory)" != 1 ]; then
  echo "ensure-engine: vm.overcommit_memory=1 for the lab's Redis (shared kernel)" >&2
  sysctl -q -w vm.overcommit_memory=1
fi

# A new container's network namespace starts from the kernel's defaults (forwarding
# off, as on a server) instead of this machine's settings (forwarding on, for
# Docker): the site scenario's hosts then start with the hardening role's network
# settings without a change of forwarding, which would reset accept_redirects
# (molecule/_shared/create.yml).
if [ "$(cat /proc/sys/net/core/devconf_inherit_init_net)" != 2 ]; then
  echo "ensure-engine: net.core.devconf_inherit_init_net=2 (containers' network settings from the kernel's defaults)" >&2
  sysctl -q -w net.core.devconf_inherit_init_net=2
fi
