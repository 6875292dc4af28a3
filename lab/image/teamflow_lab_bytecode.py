"""Lab image only: keep the bytecode of what Python compiles from zip files.

Python writes the bytecode of a module it imports from a directory to
__pycache__, but compiles a module it imports from a zip file anew each time.
Ansible sends every module run to its host as a zip (AnsiballZ), so each run
compiles ansible.module_utils again: about 100 ms of the 150 ms of CPU a no-op
module run costs a lab host (measured on the lab's bookworm image). The lab's
hosts are containers on one machine, and make test runs many thousands of
module runs on them.

This keeps the code objects zipimport compiles in CACHE, one file per source,
named by the SHA-256 of Python's magic number and the source, so a source
compiles once per host; the cached code gets the file name of the zip it is
imported from this time. The code that runs is the same as without the cache.

Root's module runs only (the cache is root's). Off when OFF exists:
`make bench` turns it off on its hosts, so its converge figures are those of
hosts without it.
"""

import os
import zipimport

CACHE = "/var/cache/teamflow-lab/bytecode"
OFF = "/etc/teamflow-lab/bytecode-cache-off"


def _renamed(code, filename):
    """code, and every code object it holds, with co_filename set to filename."""
    import types

    consts = tuple(_renamed(const, filename) if isinstance(const, types.CodeType) else const
                   for const in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def caching(compile_source, cache):
    """A zipimport._compile_source that keeps its code objects in cache."""

    def compile_cached(pathname, source):
        import hashlib
        import importlib.util
        import marshal

        data = source if isinstance(source, bytes) else source.encode()
        path = os.path.join(cache, hashlib.sha256(importlib.util.MAGIC_NUMBER + data).hexdigest())
        try:
            with open(path, "rb") as cached:
                return _renamed(marshal.loads(cached.read()), pathname)
        except (OSError, EOFError, ValueError, TypeError):
            pass
        code = compile_source(pathname, source)
        try:
            os.makedirs(cache, mode=0o700, exist_ok=True)
            partial = f"{path}.{os.getpid()}"
            with open(partial, "wb") as out:
                out.write(marshal.dumps(code))
            os.replace(partial, path)
        except OSError:
            pass
        return code

    compile_cached.teamflow_lab_bytecode = True
    return compile_cached


def install():
    """Cache zipimport's compilations in this process (root's, unless OFF exists)."""
    original = getattr(zipimport, "_compile_source", None)
    # (pathname, source) up to Python 3.13 at least; a Python that changed it goes without
    if getattr(getattr(original, "__code__", None), "co_argcount", None) != 2:
        return False
    if getattr(original, "teamflow_lab_bytecode", False):
        return False
    if os.geteuid() != 0 or os.path.exists(OFF):
        return False
    zipimport._compile_source = caching(original, CACHE)
    return True


install()
