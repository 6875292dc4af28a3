"""Lab image only: root's Ansible module runs fork from a Python that has loaded Ansible's module_utils.

Ansible runs a module on a host (with pipelining, as this project does) by piping a
program, the AnsiballZ payload, to `python3`. Each run starts Python and imports
ansible.module_utils anew: with the lab's bytecode cache (teamflow_lab_bytecode.py)
still about 200 ms of the 220 ms of CPU a no-op module run costs a lab host, where a
module's own work is 10 to 20 ms. The lab's hosts are containers on one machine, and
make test runs tens of thousands of module runs on them.

Here, when root's `python3` starts to read its program from stdin, the program is
read; an AnsiballZ payload goes to this host's module server, which forks a process
that runs it as `python3` would: with this process's stdin, stdout and stderr, its
environment, working directory and umask, `__main__` fresh, the exit handlers run at
the end. This process then exits as that one did (or is killed by the same signal);
if this one is killed, so is that one. The server, started by the first run and kept
until the container stops, has imported the module_utils of the payload that started
it; a payload whose copy of one of them differs (another Ansible on the controller)
runs here instead, and the server stops, so that the next run starts one with them.
The code that runs is the payload's; what the server saves is Python's start and the
imports. Whatever else comes on stdin runs here, as Python would have run it.

Every run is recorded in RUNS, a line each (time, who, the payload's CRC-32, how it ended): the client
(`c PID CRC served|local:WHY|lost`) and, for a run the server made, its handler (`h CLIENT_PID RUN_PID CRC
STATUS`). molecule/site/cleanup.yml reads them after the site scenario, and names any run made twice.

Root's runs only, and not when OFF exists: `make bench` turns it off on its hosts
(with the bytecode cache), so its converge figures are those of hosts without it.
"""

import os
import sys

OFF = "/etc/teamflow-lab/bytecode-cache-off"
# (another directory for the tests of tests/test_lab_modules.py)
RUNDIR = os.environ.get("TEAMFLOW_LAB_MODULES_DIR", "/run/teamflow-lab")
SOCKET = RUNDIR + "/modules.sock"
LOCK = RUNDIR + "/modules.lock"
FAILED = RUNDIR + "/modules.failed"
RUNS = RUNDIR + "/runs.log"
MARK = b"\n_ANSIBALLZ_WRAPPER = True\n"
# what every module run imports, loaded once by the server
PRELOAD = ("ansible.module_utils.basic", "ansible.module_utils._internal._ansiballz._loader")


def applies():
    """Whether this Python is root's, reading its program from a pipe or file on stdin."""
    return (sys.argv == [""] and os.getuid() == 0 and os.geteuid() == 0 and not os.isatty(0)
            and not os.path.exists(OFF))


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def record(*fields):
    """Append one line to RUNS (a write of one line to a file opened to append: lines do not mix)."""
    import time

    try:
        os.makedirs(RUNDIR, mode=0o700, exist_ok=True)
        fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        return
    try:
        os.write(fd, ("%.3f " % time.time() + " ".join(map(str, fields)) + "\n").encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def finish_site():
    """What site.main() does after the site directories this .pth file's is one of."""
    import site

    for directory in site.getsitepackages():
        if directory not in sys.path and os.path.isdir(directory):
            site.addsitedir(directory)
    site.setquit()
    site.setcopyright()
    site.sethelper()
    if not sys.flags.isolated:
        site.enablerlcompleter()
    site.execsitecustomize()
    if site.ENABLE_USER_SITE:
        site.execusercustomize()


def exit_status(code):
    """The exit status Python gives SystemExit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:  # noqa: BLE001 - as Python, which gives up on printing
        pass
    return 1


def run_here(source):
    """Run SOURCE as Python runs a program read from stdin, then exit this process."""
    import builtins
    import types

    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    try:
        exec(compile(source, "<stdin>", "exec"), main.__dict__)  # noqa: S102 - what python3 would run
        status = 0
    except SystemExit as exc:
        status = exit_status(exc.code)
    except BaseException:  # noqa: BLE001 - printed as Python prints it
        sys.excepthook(*sys.exc_info())
        status = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(status)


def payload_zip(source):
    """The bytes of the module library zip in an AnsiballZ payload, or None."""
    start = source.rfind(b"\nzip_data='")
    if start < 0:
        return None
    start += len(b"\nzip_data='")
    end = source.find(b"'", start)
    if end < 0:
        return None
    import base64

    return base64.b64decode(source[start:end])


# --- the client: the `python3` Ansible started ---------------------------------------------

def delegate(source, crc):
    """Have the server run SOURCE with this process's stdio; its exit status, or None if it cannot."""
    import _socket

    try:
        cwd = os.getcwd()
    except OSError:
        record("c", os.getpid(), crc, "local:no-cwd")
        return None
    umask = os.umask(0)
    os.umask(umask)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(SOCKET)
    except OSError:
        sock.close()
        record("c", os.getpid(), crc, "local:no-server")
        start_server(source)
        return None
    import marshal

    data = marshal.dumps((source, dict(os.environb), cwd, umask))
    message = len(data).to_bytes(8, "big") + data
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    try:
        sent = sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        # only what is left: sendall of nothing still makes a send, which fails (EPIPE) once the server has run
        # the whole payload and closed, and running it here again would print the module's result twice
        if sent < len(message):
            sock.sendall(message[sent:])
    except OSError as error:
        # the server runs a payload only once it has all of it: this one is not run there
        record("c", os.getpid(), crc, f"local:send-{error.errno}")
        return None
    reply = b""
    while len(reply) < 5:
        try:
            chunk = sock.recv(5 - len(reply))
        except InterruptedError:
            continue
        if not chunk:
            break
        reply += chunk
    if reply[:1] == b"M":  # another Ansible's module_utils: nothing ran
        record("c", os.getpid(), crc, "local:other-module-utils")
        return None
    if len(reply) != 5:
        # the run may have begun: it is not run twice
        record("c", os.getpid(), crc, "lost")
        os.write(2, b"teamflow lab module server: the run was lost\n")
        os._exit(1)
    record("c", os.getpid(), crc, "served")
    value = int.from_bytes(reply[1:], "big")
    if reply[:1] == b"S":
        import signal

        signal.signal(value, signal.SIG_DFL)
        os.kill(os.getpid(), value)
        os._exit(128 + value)
    os._exit(value)


def start_server(source):
    """Start this host's module server in the background (preloaded from SOURCE's zip)."""
    if os.path.exists(FAILED):
        return
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 1 << 16)
        serve(source)
    finally:
        os._exit(0)


# --- the server ----------------------------------------------------------------------------

class PayloadFinder:
    """ansible.* modules from the zip of the payload being run, before the server's own.

    The server imported PRELOAD from the zip of the payload that started it; a module
    run imports the rest (the module, and module_utils the server has not loaded) from
    its own zip, the one it puts first on sys.path.
    """

    @staticmethod
    def find_spec(name, path=None, target=None):
        if not name.startswith("ansible."):
            return None
        import zipimport

        for entry in sys.path:
            if entry.endswith("_payload.zip"):
                package = name.rpartition(".")[0].replace(".", "/")
                try:
                    return zipimport.zipimporter(f"{entry}/{package}/").find_spec(name)
                except zipimport.ZipImportError:
                    return None
        return None


def serve(source):
    import fcntl

    os.makedirs(RUNDIR, mode=0o700, exist_ok=True)
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server runs, or starts
    os.ftruncate(lock, 0)
    os.write(lock, b"%d\n" % os.getpid())
    try:
        library = payload_zip(source)
        if library is None:
            return
        path = f"{RUNDIR}/modules-{os.getpid()}.zip"
        with open(path, "wb") as out:
            out.write(library)
        sys.path.insert(0, path)
        import importlib

        for name in PRELOAD:
            importlib.import_module(name)
        sys.path.remove(path)
        import io
        import zipfile

        members = zipfile.ZipFile(io.BytesIO(library)).infolist()
        by_name = {member.filename: member.CRC for member in members}
        loaded = {}
        for module in list(sys.modules.values()):
            file = getattr(module, "__file__", None) or ""
            if file.startswith(path + "/"):
                member = file[len(path) + 1:]
                loaded[member] = by_name[member]
    except Exception:  # noqa: BLE001 - the runs go on without a server
        with open(FAILED, "w") as out:
            import traceback

            traceback.print_exc(file=out)
        return
    sys.meta_path.insert(0, PayloadFinder)

    import signal
    import socket

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = f"{SOCKET}.{os.getpid()}"
    listener.bind(temporary)
    os.chmod(temporary, 0o600)
    listener.listen(64)
    os.replace(temporary, SOCKET)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the handlers below reap themselves
    while True:
        try:
            connection, _ = listener.accept()
        except InterruptedError:
            continue
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                handle(connection, loaded)
            finally:
                os._exit(0)
        connection.close()


def handle(connection, loaded):
    """One module run: check the payload's module_utils, run it, report how it ended."""
    import io
    import marshal
    import select
    import signal
    import socket
    import struct
    import zipfile

    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    client, uid, _ = struct.unpack("3i", credentials)
    if uid != 0:
        return
    data, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    if len(fds) != 3 or len(data) < 8:
        return
    size = int.from_bytes(data[:8], "big")
    chunks = [data[8:]]
    received = len(data) - 8
    while received < size:
        chunk = connection.recv(min(1 << 20, size - received))
        if not chunk:
            return
        chunks.append(chunk)
        received += len(chunk)
    source, environ, cwd, umask = marshal.loads(b"".join(chunks))

    library = payload_zip(source)
    crcs = {}
    if library is not None:
        crcs = {member.filename: member.CRC for member in zipfile.ZipFile(io.BytesIO(library)).infolist()}
    if not crcs or any(crcs.get(name, crc) != crc for name, crc in loaded.items()) \
            or "ansible/module_utils/basic.py" not in crcs:
        connection.sendall(b"M\0\0\0\0")
        if crcs and "ansible/module_utils/basic.py" in crcs:
            os.kill(os.getppid(), signal.SIGTERM)  # the next run starts a server with these
        return

    pid = os.fork()
    if pid == 0:
        connection.close()
        os.setsid()
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(cwd)
        os.umask(umask)
        os.environ.clear()
        os.environb.update(environ)
        sys.argv = [""]
        run_here(source)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    ready, _, _ = select.select([pidfd, connection], [], [])
    if pidfd not in ready:  # the client is gone: so is its run
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        reply = b"S" + os.WTERMSIG(status).to_bytes(4, "big")
    else:
        reply = b"E" + os.WEXITSTATUS(status).to_bytes(4, "big")
    import zlib

    record("h", client, pid, "%08x" % zlib.crc32(source), reply[:1].decode() + str(int.from_bytes(reply[1:], "big")))
    try:
        connection.sendall(reply)
    except OSError:
        pass


def main():
    if not applies():
        return
    source = read_all(0)
    finish_site()
    if MARK in source[:4096]:
        import zlib

        delegate(source, "%08x" % zlib.crc32(source))
    run_here(source)


main()
