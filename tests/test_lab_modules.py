"""The lab image's module server (lab/image/teamflow_lab_modules.py), on this machine's Python.

Each run here is a `python3` that reads its program from stdin with the module loaded as the image's
.pth file loads it; the payload is made as Ansible makes one (a zip of an `ansible` package,
base64 in `zip_data`, written to a `..._payload.zip` and put first on sys.path), with a module
that prints what it sees. The server's directory is a temporary one, its server killed after.
"""

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from conftest import ROOT

pytestmark = pytest.mark.unit

MODULE = ROOT / "lab" / "image" / "teamflow_lab_modules.py"
# python3 as the image runs it: the .pth file's import, with argv as for a program on stdin
BOOTSTRAP = ("import sys, importlib.util; sys.argv = ['']; "
             f"spec = importlib.util.spec_from_file_location('teamflow_lab_modules', {str(MODULE)!r}); "
             "spec.loader.exec_module(importlib.util.module_from_spec(spec))")

BASIC = "import os\nLOADED_BY = os.getpid()\nVERSION = {version!r}\n"
PROBE = '''
import json, os, signal, sys, time
from ansible.module_utils import basic

def main():
    if os.environ.get("PROBE_PIDFILE"):
        with open(os.environ["PROBE_PIDFILE"], "w") as out:
            out.write(str(os.getpid()))
    if os.environ.get("PROBE_SLEEP"):
        time.sleep(float(os.environ["PROBE_SLEEP"]))
    if os.environ.get("PROBE_SIGNAL"):
        os.kill(os.getpid(), int(os.environ["PROBE_SIGNAL"]))
    umask = os.umask(0)
    print(json.dumps({"served": basic.LOADED_BY != os.getpid(), "version": basic.VERSION,
                      "probe": os.environ.get("PROBE"), "cwd": os.getcwd(), "umask": umask,
                      "stdin": sys.stdin.read(), "argv": sys.argv, "main": __import__("__main__").__dict__.get("seen")}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
'''
WRAPPER = '''#!/usr/bin/python3
_ANSIBALLZ_WRAPPER = True

seen = "yes"


def _main(zip_data):
    import base64, os, shutil, sys, tempfile
    temp = tempfile.mkdtemp(prefix="ansible_probe_payload_")
    path = os.path.join(temp, "ansible_probe_payload.zip")
    with open(path, "wb") as out:
        out.write(base64.b64decode(zip_data))
    sys.path.insert(0, path)
    try:
        from ansible.modules import probe
        probe.main()
    finally:
        shutil.rmtree(temp)


if __name__ == "__main__":
    _main(
zip_data='{zip}')
'''


def payload(version="1"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("ansible/__init__.py", "ansible/module_utils/__init__.py", "ansible/modules/__init__.py",
                     "ansible/module_utils/_internal/__init__.py",
                     "ansible/module_utils/_internal/_ansiballz/__init__.py",
                     "ansible/module_utils/_internal/_ansiballz/_loader.py"):
            archive.writestr(name, "")
        archive.writestr("ansible/module_utils/basic.py", BASIC.format(version=version))
        archive.writestr("ansible/modules/probe.py", PROBE)
    return WRAPPER.format(zip=base64.b64encode(buffer.getvalue()).decode()).encode()


@pytest.fixture()
def rundir(tmp_path):
    directory = tmp_path / "run"
    yield directory
    lock = directory / "modules.lock"
    if lock.exists() and lock.read_text().strip():
        try:
            os.kill(int(lock.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def python(rundir, program, cwd="/", **env):
    """`python3` with PROGRAM on stdin as the image runs it; the CompletedProcess."""
    environment = {**os.environ, "TEAMFLOW_LAB_MODULES_DIR": str(rundir), **env}
    return subprocess.run([sys.executable, "-c", BOOTSTRAP], input=program, capture_output=True, cwd=cwd,
                          env=environment, timeout=60, check=False)


def served(rundir, program, **env):
    """Run PROGRAM once to start the server, wait until it listens, then run it through it."""
    sock = rundir / "modules.sock"
    # a server that stopped leaves its socket: the new one replaces it
    stale = sock.stat().st_ino if sock.exists() else None
    first = python(rundir, program, **env)
    for _ in range(100):
        if sock.exists() and sock.stat().st_ino != stale:
            break
        time.sleep(0.1)
    assert sock.exists(), (rundir / "modules.failed").read_text() if (rundir / "modules.failed").exists() else ""
    return first, python(rundir, program, **env)


@pytest.fixture(autouse=True)
def root():
    assert os.geteuid() == 0, "the module server serves root's runs: these tests run as root (make test does)"


def test_a_payload_runs_in_the_server_as_python_would_run_it(rundir, tmp_path):
    program = payload()
    env = {"PROBE": "value with spaces", "PROBE_EXIT": "3"}
    first, second = served(rundir, program, **env)
    plain = subprocess.run([sys.executable], input=program, capture_output=True, cwd="/", timeout=60, check=False,
                           env={**os.environ, **env})
    outputs = [json.loads(run.stdout) for run in (plain, first, second)]
    print(f"plain python, first run, second run: {outputs}")
    assert [output.pop("served") for output in outputs] == [False, False, True]
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0]["probe"] == "value with spaces" and outputs[0]["main"] == "yes"
    assert plain.returncode == first.returncode == second.returncode == 3
    assert plain.stderr == first.stderr == second.stderr == b"to stderr\n"
    # the working directory and umask are the client's
    old = os.umask(0o077)
    try:
        third = python(rundir, program, cwd=str(tmp_path))
    finally:
        os.umask(old)
    seen = json.loads(third.stdout)
    assert (seen["served"], seen["cwd"], seen["umask"]) == (True, str(tmp_path), 0o077)


def test_each_run_is_recorded_by_its_client_and_a_served_one_by_its_handler_too(rundir):
    first, second = served(rundir, payload())
    lines = [line.split() for line in (rundir / "runs.log").read_text().splitlines()]
    print(lines)
    clients = [fields[1:] for fields in lines if fields[1] == "c"]
    handlers = [fields[1:] for fields in lines if fields[1] == "h"]
    assert [client[3] for client in clients] == ["local:no-server", "served"]
    assert len(clients[0][2]) == 8 and clients[0][2] == clients[1][2]  # the same payload's CRC
    # the handler names the client that was served, the process that ran it, the payload and how it ended
    assert len(handlers) == 1 and handlers[0][1] == clients[1][1] and handlers[0][3] == clients[1][2]
    assert handlers[0][4] == "E0" and handlers[0][2] != handlers[0][1]


def test_a_payload_the_server_took_whole_is_not_run_again_when_the_server_has_already_closed(rundir):
    """The client sent the whole payload in one sendmsg; the server ran it, answered and closed before the client
    went on. Nothing is left to send, so nothing may fail: a send of nothing to a closed socket fails (EPIPE), and
    the client then ran the payload itself too, printing the module's result twice. Here the client's socket (the
    `_socket` it imports) is a fake that takes the whole payload at once, fails any further send as a closed
    socket does, and answers as the server did; the client must report the server's exit, not run it here."""
    program = f"""
import importlib.util, sys, types
sys.argv = ["test"]  # not the image's python3 on stdin: importing the module does nothing by itself
spec = importlib.util.spec_from_file_location("teamflow_lab_modules", {str(MODULE)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
fake = types.ModuleType("_socket")
fake.AF_UNIX = fake.SOCK_STREAM = fake.SOL_SOCKET = fake.SCM_RIGHTS = 1
class Socket:
    def __init__(self, *args):
        self.reply = b"E" + (0).to_bytes(4, "big")
    def connect(self, path):
        pass
    def sendmsg(self, buffers, ancillary):
        return len(buffers[0])
    def sendall(self, data):
        raise BrokenPipeError(32, "Broken pipe")
    def recv(self, size):
        chunk, self.reply = self.reply[:size], self.reply[size:]
        return chunk
    def close(self):
        pass
fake.socket = Socket
sys.modules["_socket"] = fake
print("delegated:", module.delegate(b"payload", "0000abcd"))
print("run here")
sys.exit(3)
"""
    rundir.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "TEAMFLOW_LAB_MODULES_DIR": str(rundir)})
    assert result.returncode == 0 and "run here" not in result.stdout, result.stdout + result.stderr
    fields = (rundir / "runs.log").read_text().split()
    assert (fields[1], fields[3], fields[4]) == ("c", "0000abcd", "served"), fields


def test_a_payload_with_other_module_utils_runs_here_and_stops_the_server(rundir):
    served(rundir, payload("1"))
    pid = int((rundir / "modules.lock").read_text())
    other = python(rundir, payload("2"))
    seen = json.loads(other.stdout)
    assert (seen["served"], seen["version"], other.returncode) == (False, "2", 0)
    for _ in range(50):
        if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the server still runs")
    # and the next run starts one with the new module_utils
    _, again = served(rundir, payload("2"))
    assert json.loads(again.stdout)["served"] is True


def test_a_run_ended_by_a_signal_ends_its_python_with_it(rundir):
    _, second = served(rundir, payload(), PROBE_SIGNAL=str(int(signal.SIGTERM)))
    assert second.returncode == -signal.SIGTERM


def test_killing_the_python_kills_the_run(rundir, tmp_path):
    served(rundir, payload())
    pidfile = tmp_path / "probe.pid"
    environment = {**os.environ, "TEAMFLOW_LAB_MODULES_DIR": str(rundir), "PROBE_SLEEP": "60",
                   "PROBE_PIDFILE": str(pidfile)}
    client = subprocess.Popen([sys.executable, "-c", BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=environment)
    client.stdin.write(payload())
    client.stdin.close()
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    run = int(pidfile.read_text())
    assert run != client.pid
    client.kill()
    client.wait(10)
    for _ in range(50):
        if not os.path.exists(f"/proc/{run}"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the run outlived its python")


def test_a_program_that_is_no_payload_runs_here_as_python_would(rundir):
    run = python(rundir, b"import sys\nprint('no payload', sys.argv)\nraise SystemExit(4)\n")
    assert (run.returncode, run.stdout) == (4, b"no payload ['']\n")
    failing = python(rundir, b"raise ValueError('shown as python shows it')\n")
    assert failing.returncode == 1
    assert b"ValueError: shown as python shows it" in failing.stderr
    assert not (rundir / "modules.sock").exists()


def test_only_a_server_of_root_serves_and_only_roots_runs(rundir):
    served(rundir, payload())
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(rundir / "modules.sock"))
    sock.close()
    assert oct((rundir / "modules.sock").stat().st_mode & 0o777) == "0o600"
    assert oct(rundir.stat().st_mode & 0o777) == "0o700"
