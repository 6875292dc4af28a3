#!/usr/bin/env bash
# Build the reference app's release artifact:
#   dist/releases/teamflow-VERSION.tar.gz  =  teamflow-VERSION/{RELEASE.json, wheels/, frontend/}
# wheels/ holds the app's wheel and every pinned dependency as binary wheels for
# the hosts' Python (RELEASE_PYTHON, 3.11 = Debian 12; 3.13 = Debian 13), so hosts
# install offline. BROKEN=health builds a release whose /health fails (tests only).
# Usage: build-release.sh VERSION   (env: BROKEN, RELEASE_PYTHON, DIST, PIP)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${1:?usage: build-release.sh VERSION}
broken=${BROKEN:-}
python_version=${RELEASE_PYTHON:-3.11}
dist=${DIST:-$here/../dist/releases}
pip=${PIP:-pip}
[[ $version =~ ^[0-9]+(\.[0-9]+)*([a-z0-9.+-]*)$ ]] || { echo "VERSION '$version' is not a release version (e.g. 1.2.0)" >&2; exit 2; }

# reproducible: the same sources give the same artifact, byte for byte
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/teamflow-$version
mkdir -p "$root/wheels" "$root/frontend" "$dist"

cp -r "$here/backend" "$work/src"
printf 'VERSION = "%s"\nBROKEN = "%s"\n' "$version" "$broken" > "$work/src/teamflow_app/_build.py"
"$pip" wheel --quiet --no-deps --wheel-dir "$root/wheels" "$work/src"
"$pip" download --quiet --no-deps --only-binary=:all: --implementation cp \
  --python-version "$python_version" \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
  --dest "$root/wheels" -r "$here/backend/requirements.txt" 2> >(grep -v "is neither a file nor a directory" >&2)
python3 "$here/frontend/build.py" "$version" "$root/frontend"

python3 - "$root" "$version" "$python_version" "$broken" <<'PY'
import hashlib, json, pathlib, sys
root, version, python, broken = pathlib.Path(sys.argv[1]), *sys.argv[2:5]
wheels = sorted(p.name for p in (root / "wheels").glob("*.whl"))
app = [w for w in wheels if w.startswith("teamflow_app-")]
deps = hashlib.sha256("\n".join(w for w in wheels if w not in app).encode()).hexdigest()
manifest = {"name": "teamflow", "version": version, "python": python, "package": "teamflow-app",
            "app_wheel": app[0], "dependencies_digest": deps, "wheels": wheels, "broken": broken}
(root / "RELEASE.json").write_text(json.dumps(manifest, indent=2) + "\n")
PY
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@"$SOURCE_DATE_EPOCH" -cf - "teamflow-$version" \
  | gzip -n -9 > "$dist/teamflow-$version.tar.gz"
echo "$dist/teamflow-$version.tar.gz"
