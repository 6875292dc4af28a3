#!/usr/bin/env python3
"""Build the frontend bundle: assets renamed by content hash, index.html pointing at them.

    build.py VERSION OUTDIR

OUTDIR gets index.html and assets/app.<hash>.js|css; a file's name changes exactly
when its content does, so nginx can serve assets/ as immutable.
"""

import hashlib
import pathlib
import sys

SRC = pathlib.Path(__file__).resolve().parent / "src"


def main(version, outdir):
    out = pathlib.Path(outdir)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    index = (SRC / "index.html").read_text(encoding="utf-8").replace("@VERSION@", version)
    for name in ("app.js", "app.css"):
        content = (SRC / name).read_bytes()
        if name == "app.js":
            content = content.replace(b"@VERSION@", version.encode())
        stem, ext = name.rsplit(".", 1)
        hashed = f"{stem}.{hashlib.sha256(content).hexdigest()[:12]}.{ext}"
        (out / "assets" / hashed).write_bytes(content)
        index = index.replace(f"@{name}@", f"/assets/{hashed}")
    (out / "index.html").write_text(index, encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
