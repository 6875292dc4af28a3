#!/usr/bin/env bash
# Build the lab's pebble: Debian's pebble 2.4.0 with lab/pebble/*.patch, which
# keeps its root and its ACME accounts across restarts (PEBBLE_ROOT_DIR,
# PEBBLE_ACCOUNTS_FILE; upstream declined a fixed root, letsencrypt/pebble#298)
# and never reuses a valid authorization when PEBBLE_AUTHZREUSE is 0 (upstream
# reuses 1% of them then, and a renewal skips its validation).
#
#   lab/build-pebble.sh IMAGE       IMAGE: the lab's Debian 12 base image
#                                   (lab/build-image.sh bookworm; the package
#                                   installs on Debian 13 as well)
#
# Prints the path of the .deb on stdout. It is built once per machine, in a
# throwaway container of IMAGE (through the host's apt cache), and kept under
# $TEAMFLOW_LAB_CACHE (default /var/cache/teamflow-lab) by a hash of the recipe
# (this script, the patches, the image), so scenarios running side by side and
# later clones reuse it. Debian's source is checked against the .dsc's pinned
# SHA-256, and its files against the .dsc.
set -euo pipefail

image=${1:?usage: lab/build-pebble.sh IMAGE}
here=$(cd "$(dirname "$0")" && pwd)
pool=${TEAMFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}/pool/main/p/pebble
dsc=pebble_2.4.0+ds1-2.dsc
dsc_sha256=4da2351758f0a7124466236b310a319b7548a3a46eb4c34396759c30582bb138
version=2.4.0+ds1-2+teamflow2

recipe_hash=$(cat "$0" "$here"/pebble/*.patch <(echo "$image") | sha256sum | cut -c1-12)
cache=${TEAMFLOW_LAB_CACHE:-/var/cache/teamflow-lab}/pebble
deb=$cache/$recipe_hash/pebble_${version}_amd64.deb
mkdir -p "$cache"

exec 9>"$cache/.lock"
flock 9
if [ -s "$deb" ]; then
  echo "$deb"
  exit 0
fi

work=$(mktemp -d /var/tmp/teamflow-pebble.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "build-pebble: building $version in $work" >&2
for file in "$dsc" pebble_2.4.0+ds1.orig.tar.xz pebble_2.4.0+ds1-2.debian.tar.xz; do
  curl -fsS --retry 3 -o "$work/$file" "$pool/$file"
done
echo "$dsc_sha256  $work/$dsc" | sha256sum -c --quiet - >&2
cp "$here"/pebble/*.patch "$work/"

docker run --rm -v "$work:/build" -e "VERSION=$version" "$image" bash -euo pipefail -c '
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends dpkg-dev debhelper dh-golang golang-any patch \
    golang-github-letsencrypt-challtestsrv-dev golang-github-miekg-dns-dev golang-gopkg-square-go-jose.v2-dev >/dev/null
  cd /build
  dpkg-source -x pebble_2.4.0+ds1-2.dsc src >/dev/null
  cd src
  for p in ../*.patch; do patch -s -p1 <"$p"; done
  { printf "pebble (%s) unstable; urgency=medium\n\n" "$VERSION"
    printf "  * teamflow.platform lab: keep the root and the accounts across restarts;\n"
    printf "    PEBBLE_AUTHZREUSE=0 reuses no authorization.\n\n"
    printf " -- teamflow.platform lab <lab@teamflow.invalid>  %s\n\n" "$(date -R)"
    cat debian/changelog; } >debian/changelog.new
  mv debian/changelog.new debian/changelog
  dpkg-buildpackage -b -uc -us -d >/build/build.log 2>&1 || { tail -40 /build/build.log; exit 1; }
' >&2

mkdir -p "$(dirname "$deb")"
cp "$work/pebble_${version}_amd64.deb" "$deb.tmp"
mv "$deb.tmp" "$deb"
echo "$deb"
