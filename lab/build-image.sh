#!/usr/bin/env bash
# Build the lab's base image: bare Debian with python3 and systemd as PID 1.
#
#   lab/build-image.sh [SUITE]      SUITE: bookworm (default) or trixie
#
# Prints the image reference on stdout. The tag carries a hash of the recipe
# (this script, lab/image/, the host's extra CA certificates and the suite), so
# a changed recipe builds a new image and an unchanged one is reused.
set -euo pipefail

suite=${1:-bookworm}
case "$suite" in
  bookworm | trixie) ;;
  *) echo "build-image: unknown suite '$suite' (bookworm or trixie)" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
mirror=${TEAMFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${TEAMFLOW_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
packages=python3,python3-apt,systemd,systemd-sysv,sudo,ca-certificates,iproute2,procps

# the common role's apt hook, which the image carries too (below)
update_stamp_hook="$here/../ansible_collections/teamflow/platform/roles/common/templates/apt-update-stamp.conf.j2"
shopt -s nullglob
extra_cas=(/usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt)
recipe_hash=$(
  {
    echo "$suite $mirror $security_mirror $packages"
    cat "$0" "$here"/image/* "$update_stamp_hook"
    for ca in "${extra_cas[@]}"; do cat "$ca"; done
  } | sha256sum | cut -c1-12
)
repo=teamflow-lab/debian
image="$repo:$suite-$recipe_hash"

if docker image inspect "$image" >/dev/null 2>&1; then
  docker tag "$image" "$repo:$suite"
  echo "$image"
  exit 0
fi

command -v debootstrap >/dev/null || {
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
}

root=$(mktemp -d /var/tmp/teamflow-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-image: debootstrapping $suite into $root" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2

# Debian's own sources, security updates included, in deb822 form.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# Trust the CAs the host trusts beyond Debian's bundle (an HTTPS proxy's, for one).
for ca in "${extra_cas[@]}"; do
  install -m 0644 "$ca" "$root/usr/local/share/ca-certificates/$(basename "$ca")"
done
chroot "$root" update-ca-certificates >&2

# Debian's security and point-release updates, as a current image of the release has
# them (a server is not left on the packages of its installation day): without them
# every lab host's first package install upgraded the same twenty packages (Python,
# perl, OpenSSL, tzdata, CA certificates) again, about 13 s of CPU each.
chroot "$root" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get dist-upgrade -y -qq >&2

# Use the host's apt cache when there is one.
install -m 0755 "$here/image/apt-proxy-detect" "$root/usr/local/sbin/teamflow-lab-apt-proxy"
echo 'Acquire::http::Proxy-Auto-Detect "/usr/local/sbin/teamflow-lab-apt-proxy";' \
  >"$root/etc/apt/apt.conf.d/01teamflow-lab-proxy"

# Root's Python keeps the bytecode of what it compiles from zip files (Ansible's
# module payloads): lab/image/teamflow_lab_bytecode.py says why and how.
site_packages=$(chroot "$root" python3 -c 'import site; print(site.getsitepackages()[0])')
install -d -m 0755 "$root$site_packages" "$root/etc/teamflow-lab"
install -m 0644 "$here/image/teamflow_lab_bytecode.py" "$root$site_packages/teamflow_lab_bytecode.py"
echo 'import teamflow_lab_bytecode' >"$root$site_packages/teamflow_lab_bytecode.pth"
# and root's module runs fork from a Python that has Ansible's module_utils loaded:
# lab/image/teamflow_lab_modules.py says why and how (its .pth after the one above).
install -m 0644 "$here/image/teamflow_lab_modules.py" "$root$site_packages/teamflow_lab_modules.py"
echo 'import teamflow_lab_modules' >"$root$site_packages/teamflow_lab_modules.pth"

# dpkg syncs every file it unpacks to disk. The lab's disks are the machine's, whose
# crash ends the lab anyway, so the image's dpkg does not (as Docker's Debian images):
# package installs are most of a converge's time on fresh hosts.
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/teamflow-lab-unsafe-io"

# A container boots systemd without a console, udev or a real disk.
for unit in getty@tty1.service console-getty.service systemd-remount-fs.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-firstboot.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Package lists as a freshly installed Debian has them (so a check-mode run can
# resolve packages), aged so that the first apt task with cache_valid_time refreshes them.
chroot "$root" apt-get update -qq >&2
chroot "$root" apt-get clean >&2
rm -f "$root/var/lib/apt/periodic/update-success-stamp"
touch -d @0 "$root/var/lib/apt/lists"
# The hook the common role installs before its first refresh (roles/common, "Record
# each refresh of the package lists"), which site.yml applies before every other
# role. A role's own scenario does not apply common: with the hook here, its apt
# tasks refresh the lists once, as on a host common manages, instead of at each
# task of each converge. The common role replaces this file with its own (the
# template's lines less its header).
grep -v '^{{' "$update_stamp_hook" >"$root/etc/apt/apt.conf.d/15teamflow-update-stamp"
chmod 0644 "$root/etc/apt/apt.conf.d/15teamflow-update-stamp"

echo "build-image: importing $image" >&2
tar -C "$root" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  - "$image" >&2
docker tag "$image" "$repo:$suite"
echo "$image"
