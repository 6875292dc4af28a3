#!/usr/bin/env python3
"""`make bench`: how fast the stack deploys, how much load it holds, how fast it recovers.

Runs on the lab (molecule scenario `site`, inventories/lab), from scratch:

  lab       destroy the lab, create its containers and helpers, prepare them
  converge  site.yml on the fresh lab, the no-op rerun, the no-op rerun with Mitogen
  load      open-model load from tf-mon1: 1000 users on keep-alive connections at the
            load balancer (/health, a static asset, the API reading PostgreSQL through
            Redis) and the same straight at one app host
  capacity  the arrival rate rising in steps (x1.6 from 100/s) per endpoint (/health, a
            static asset, API reads and writes, through the load balancer and at one app
            host) until p99 passes 500 ms or more than 0.1 % fail: each step's rate,
            latencies, failures, the client's CPU and each host's; then keep-alive
            connections held at the load balancer (2500, 5000, 10000) and nginx's memory
  deploy    a rolling deploy of the app tier (1.0.0 -> 1.1.0), then rollback.yml (back to
            1.0.0), each under steady load
  failover  open-model load through the load balancer (/health, a list of notes from
            the read pool, new notes) while the database tier loses its leader: a
            switchover, a kill -9 of the leader's postmaster, the leader's host killed
            and started again; failed writes and reads, seconds to the first write,
            lost writes, seconds until the old leader streams again
  faults    the same load with a note read through the cache while the app and cache
            tiers fail: the Redis master stopped (Sentinel fails it over; then back), Redis
            stopped 30 s on both cache hosts, one Gunicorn master killed (kill -9), an app
            host stopped 30 s, the database unreachable from the app hosts 25 s; requests
            failed, non-2xx, p99, the slowest API answer, seconds until whole again
  backup    pgbench database of a few GB: full and incremental backups per compression
            type, the verification restore, the recovery point after a hard kill
  scale     two more app hosts join (site.yml), the no-op rerun with four app hosts
            (both with Mitogen, compared with the Mitogen no-op of two), the capacity of
            API reads through the load balancer with four; they stay

Writes benchmarks/results/<UTC time>.json (and latest.json after a complete run
without errors), prints the table (benchmarks/report.py), and exits non-zero when
a phase failed (the figures of the others are still written). Logs of every
command: benchmarks/results/logs/.

    benchmarks/bench.py [--phases converge,load] [--pgbench-scale 150] [--users 1000]
"""

import argparse
import concurrent.futures
import configparser
import contextlib
import datetime
import ipaddress
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import threading
import time
import traceback
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openload  # noqa: E402 - the sibling module (the load client), for its fault figures
import report  # noqa: E402 - the sibling module, also a command of its own
import plots  # noqa: E402 - the same, for the pictures

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LOGS = RESULTS / "logs"
VAULT = ROOT / ".lab" / "vault-password"
LAB_INVENTORY = ROOT / "inventories" / "lab"
SCALE_INVENTORY = ROOT / "benchmarks" / "inventory" / "scale-app-hosts.yml"
PHASES = ("lab", "converge", "load", "capacity", "deploy", "failover", "faults", "backup", "scale")
CLIENT = "tf-mon1"          # in the monitoring group: the firewall lets it reach the app port too
WEB, APP, APPS, CACHE = "tf-web1", "tf-app1", ("tf-app1", "tf-app2"), "tf-cache1"
# the site's name: the lab's containers resolve it to the web tier's shared address (keepalived)
SITE = "teamflow.test"
CACHES, REPLICA_CACHE = ("tf-cache1", "tf-cache2"), "tf-cache2"
VERIFY_HOST = "tf-db1"       # the verification restores run here (any member: the repositories are on S3)
FAILOVER_CLIENT = "tf-acme"  # outside the stack, as a user is: it trusts pebble's root only
STANZA = "teamflow"
LOG_HOST = "tf-mon1"         # the log host (roles log_server, log_shipper)
LOG_SENDERS = ("tf-web1", "tf-app1", "tf-db1", "tf-cache1")
INCR_TRANSACTIONS = 20000   # pgbench transactions (2 clients) before each incremental backup


def first_json(text):
    """The first JSON object in a command's output (warnings may come before or after it)."""
    return json.JSONDecoder().raw_decode(text[text.index("{"):])[0]


def log_path(label):
    LOGS.mkdir(parents=True, exist_ok=True)
    return LOGS / f"{label}.log"


def sh(cmd, label=None, check=True, env=None, timeout=None):
    """Run a command (a list); (rc, output, seconds). With a label its output also streams to the label's log."""
    began = time.monotonic()
    if label:
        log = log_path(label)
        with open(log, "w", encoding="utf-8") as handle:
            handle.write(f"$ {shlex.join(map(str, cmd))}\n")
            handle.flush()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        seconds = time.monotonic() - began
        output = log.read_text().split("\n", 1)[1]
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n# rc {proc.returncode}, {seconds:.1f} s\n")
    else:
        # stdout alone (what callers parse), stderr for the error message
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        seconds = time.monotonic() - began
        output = proc.stdout
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(map(str, cmd))} failed (rc {proc.returncode}); "
                           f"{'see ' + str(log_path(label)) if label else (output + proc.stderr)[-2000:]}")
    return proc.returncode, output, seconds


def dexec(container, script, check=True, label=None, timeout=None):
    """Run a bash script in a lab container."""
    return sh(["docker", "exec", container, "bash", "-c", script], label=label, check=check, timeout=timeout)


def ansible_env(**extra):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(VAULT),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    })
    env.update(extra)
    return env


RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                   r"\s+rescued=(\d+)\s+ignored=(\d+)", re.M)
PROFILE = re.compile(r"^(.+?) -+ (\d+\.\d+)s$", re.M)


def parse_run(text):
    """Per-host recap counts and profile_tasks' per-task seconds from an ansible-playbook log."""
    hosts = {}
    for match in RECAP.finditer(text):
        ok, changed, unreachable, failed, skipped, rescued, ignored = map(int, match.groups()[1:])
        hosts[match.group(1)] = {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed,
                                 "skipped": skipped, "rescued": rescued, "ignored": ignored}
    summary = text.rsplit("PLAY RECAP", 1)[-1]
    tasks = [(name.strip(), float(seconds)) for name, seconds in PROFILE.findall(summary)]
    return hosts, tasks


def mitogen_strategy_path():
    import ansible_mitogen  # noqa: PLC0415 - only the Mitogen runs need it
    return str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy")


def inventory_hosts(inventories, only_group=None):
    """The names of the hosts of these inventories (all of them together), or of one group (its own hosts)."""
    _, out, _ = sh(["ansible-inventory", *sum((["-i", str(i)] for i in inventories), []), "--list"],
                   env=ansible_env())
    listing = json.loads(out)
    if only_group:
        return sorted(listing.get(only_group, {}).get("hosts", []))
    # a host without variables is only in its groups' lists, not in _meta's hostvars
    return sorted(set(listing["_meta"]["hostvars"]).union(
        *(group.get("hosts", []) for name, group in listing.items() if name != "_meta")))


# --- CPU accounting: the controller (this process's children), the hosts (their containers' cgroups), the engine


def container_cpu_seconds(names):
    """CPU seconds each running container of NAMES has used since it started (its cgroup's counter); a name
    whose counter cannot be read here (not running, another cgroup layout) is left out."""
    _, text, _ = sh(["docker", "inspect", "-f", "{{.Name}} {{.Id}} {{.State.Running}}", *names], check=False)
    seconds = {}
    for line in text.splitlines():
        name, cid, running = line.split()
        if running != "true":
            continue
        for path, scale, field in (
                (f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", 1e9, None),              # v1, cgroupfs
                (f"/sys/fs/cgroup/cpu,cpuacct/docker/{cid}/cpuacct.usage", 1e9, None),
                (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat", 1e6, "usage_usec"),  # v2, systemd
                (f"/sys/fs/cgroup/docker/{cid}/cpu.stat", 1e6, "usage_usec")):                    # v2, cgroupfs
            with contextlib.suppress(OSError):
                counter = Path(path).read_text()
                value = int(counter) if field is None else int(re.search(rf"^{field} (\d+)$", counter, re.M).group(1))
                seconds[name.lstrip("/")] = value / scale
                break
    return seconds


def engine_cpu_seconds():
    """CPU seconds of the container engine's processes (dockerd, containerd and its shims) so far."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            name, rest = stat.read_text().rsplit(")", 1)
            if name.split("(", 1)[1].startswith(("dockerd", "containerd")):
                fields = rest.split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def cpu_snapshot(hosts):
    """What the controller (the commands this process ran and waited for), HOSTS and the engine used so far."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"controller": children.ru_utime + children.ru_stime, "hosts": container_cpu_seconds(hosts),
            "engine": engine_cpu_seconds()}


def cpu_used(before, after):
    """The CPU seconds between two snapshots: controller, hosts (together; None when a host's counter is
    missing from either) and engine, plus each host's."""
    per_host = {name: round(after["hosts"][name] - before["hosts"][name], 2)
                for name in after["hosts"] if name in before["hosts"]}
    whole = bool(before["hosts"]) and set(per_host) == set(after["hosts"]) == set(before["hosts"])
    return {"controller_cpu_s": round(after["controller"] - before["controller"], 1),
            "hosts_cpu_s": round(sum(per_host.values()), 1) if whole else None,
            "engine_cpu_s": round(after["engine"] - before["engine"], 1),
            "hosts": per_host}


def playbook(label, name, inventories=(LAB_INVENTORY,), extra=(), mitogen=False):
    """Run a playbook with profile_tasks; its wall time, task counts and slowest tasks.

    With `mitogen`, under Mitogen's strategy (its default, in-process task isolation)."""
    inventories = list(inventories)
    env = ansible_env(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
                      PROFILE_TASKS_TASK_OUTPUT_LIMIT="100000", PROFILE_TASKS_SORT_ORDER="descending")
    if mitogen:
        # Mitogen replaces connection plugins it knows by their short name: the lab's
        # community.docker.docker becomes `docker` (host variables beat group_vars/all)
        names = inventory_hosts(inventories)
        overlay = LOGS / f"{label}-inventory.json"
        overlay.write_text(json.dumps({"all": {"hosts": {h: {"ansible_connection": "docker"} for h in names}}}))
        inventories.append(overlay)
        env.update(ANSIBLE_STRATEGY_PLUGINS=mitogen_strategy_path(), ANSIBLE_STRATEGY="mitogen_linear")
    cmd = ["ansible-playbook", *sum((["-i", str(i)] for i in inventories), []), str(ROOT / "playbooks" / name), *extra]
    names = inventory_hosts(inventories)
    before = cpu_snapshot(names)
    rc, out, seconds = sh(cmd, label=label, check=False, env=env)
    cpu = cpu_used(before, cpu_snapshot(names))
    hosts, tasks = parse_run(out)
    results = sum(h["ok"] + h["failed"] + h["skipped"] + h["ignored"] for h in hosts.values())
    figures = {
        "playbook": name, "strategy": "mitogen_linear" if mitogen else "linear",
        "rc": rc, "wall_s": round(seconds, 1), "hosts": len(hosts), "tasks": len(tasks),
        "task_results": results,
        "changed": sum(h["changed"] for h in hosts.values()),
        "failed": sum(h["failed"] + h["unreachable"] for h in hosts.values()),
        "s_per_task": round(seconds / len(tasks), 3) if tasks else None,
        "s_per_task_per_host": round(seconds / results, 3) if results else None,
        # where the run's CPU went: ansible on the controller, the modules on the hosts, the engine between
        "controller_cpu_s": cpu["controller_cpu_s"], "hosts_cpu_s": cpu["hosts_cpu_s"],
        "engine_cpu_s": cpu["engine_cpu_s"],
        "controller_cpu_ms_per_result": round(1000 * cpu["controller_cpu_s"] / results, 1) if results else None,
        "hosts_cpu_ms_per_result": round(1000 * cpu["hosts_cpu_s"] / results, 1)
        if results and cpu["hosts_cpu_s"] is not None else None,
        "top_tasks": [{"task": t, "s": s} for t, s in tasks[:10]],
    }
    if rc != 0:
        raise PhaseError(f"{name} failed (rc {rc}); see {log_path(label)}", figures)
    return figures


class PhaseError(RuntimeError):
    def __init__(self, message, figures=None):
        super().__init__(message)
        self.figures = figures


def bytecode_cache_off(inventory):
    """Turn the lab image's bytecode cache and module server off on the inventory's hosts.

    The lab's hosts keep the bytecode of Ansible's module payloads and run them from a
    Python that has module_utils loaded, which makes a module run cheaper than on a real
    host (lab/image/teamflow_lab_bytecode.py, teamflow_lab_modules.py). The bench
    measures hosts without them, so its figures are those of real hosts.
    """
    for host in inventory_hosts([inventory]):
        dexec(host, "touch /etc/teamflow-lab/bytecode-cache-off", label=f"bytecode-cache-off-{host}")


def molecule(action, label):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return sh(["molecule", action, *(["--force"] if action == "prepare" else []), "--scenario-name", "site"],
              label=label, env=env)[2]


# --- phases -------------------------------------------------------------------

def phase_lab(args, out):
    # molecule/site/destroy.yml also removes the app hosts a previous bench added
    out["destroy_s"] = round(molecule("destroy", "lab-destroy"), 1)
    out["create_s"] = round(molecule("create", "lab-create"), 1)
    out["prepare_s"] = round(molecule("prepare", "lab-prepare"), 1)
    bytecode_cache_off(LAB_INVENTORY)


def phase_converge(args, out):
    out["fresh"] = playbook("converge-fresh", "site.yml")
    out["noop"] = playbook("converge-noop", "site.yml")
    out["noop_mitogen"] = playbook("converge-noop-mitogen", "site.yml", mitogen=True)
    out["noop_mitogen_vs_default"] = ratio(out["noop_mitogen"]["wall_s"], out["noop"]["wall_s"])


def phase_scale(args, out):
    # last, so the other phases run on the lab as inventories/lab describes it; the
    # extra hosts stay until `make lab-destroy` (or the next `make bench`) removes them.
    # Both runs are under Mitogen, to stay inside the bench's time; the no-op with the
    # extra app hosts is compared with Mitogen's no-op with 2. The join runs in Mitogen's
    # default, in-process mode: common installs python3-cryptography before any task
    # looks for it (README, Mitogen). Then the capacity of API reads through the load
    # balancer, as in the capacity phase: what the extra app hosts buy.
    both = (LAB_INVENTORY, SCALE_INVENTORY)
    sh(["ansible-playbook", "-i", str(SCALE_INVENTORY), str(ROOT / "benchmarks" / "scale-hosts.yml"),
        "-e", "bench_scale_state=started"], label="scale-hosts-start", env=ansible_env())
    bytecode_cache_off(SCALE_INVENTORY)
    apps = inventory_hosts(both, "app")
    out["app_hosts"] = len(apps)
    out["scale_out"] = playbook("scale-out", "site.yml", inventories=both, mitogen=True)
    out["noop_scaled_mitogen"] = playbook("scale-noop-mitogen", "site.yml", inventories=both, mitogen=True)
    sh(["docker", "cp", str(ROOT / "benchmarks" / "userload.py"), f"{CLIENT}:/root/userload.py"])
    ids, _ = capacity_setup()
    reads = next(gets for key, gets, _, _ in capacity_endpoints(f"https://{SITE}", f"http://{APP}:8000", "", ids)
                 if key == "lb_api_read")
    with client_sources(args.capacity_sources) as sources:
        out["lb_api_read"] = capacity_run(args, "scale-lb_api_read", reads, [], sources, inventory_hosts(both))


@contextlib.contextmanager
def client_sources(count):
    """The load client with `count` more addresses on the lab network (the highest of its subnet)."""
    _, network, _ = sh(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}/{{.IPPrefixLen}}{{end}}",
                        CLIENT])
    interface = ipaddress.ip_interface(network.strip())
    _, dev, _ = dexec(CLIENT, f"ip -o -4 addr show | awk '$4 == \"{interface.with_prefixlen}\" {{print $2}}'")
    top = int(interface.network.broadcast_address)
    sources = [str(ipaddress.ip_address(top - 1 - i)) for i in range(count)]
    added = [f"{a}/{interface.network.prefixlen} dev {dev.strip()}" for a in sources]
    dexec(CLIENT, "".join(f"ip addr replace {a}; " for a in added))
    try:
        yield sources
    finally:
        dexec(CLIENT, "".join(f"ip addr del {a}; " for a in added))


def userload(label, urls, users, interval, duration, sources=(), background=False, stop_file=None, processes=1,
             posts=()):
    cmd = ["python3", "/root/userload.py", "--users", str(users), "--interval", str(interval),
           "--duration", str(duration), "--out", f"/root/{label}.json", "--processes", str(processes)]
    for url in urls:
        cmd += ["--url", url]
    for url in posts:
        cmd += ["--post", url]
    for source in sources:
        cmd += ["--source", source]
    if stop_file:
        cmd += ["--stop-file", stop_file]
    if background:
        sh(["docker", "exec", "-d", CLIENT, *cmd])
        return None
    rc, text, _ = sh(["docker", "exec", CLIENT, *cmd], label=f"load-{label}", check=True, timeout=duration + 300)
    return first_json(text)


def client_get(url):
    """The body of a GET of URL from the load client (which reaches the app hosts and the load balancer)."""
    return dexec(CLIENT, f"python3 -c \"import urllib.request as u; print(u.urlopen('{url}').read().decode())\"")[1]


def api_note_urls(base, count):
    """Create `count` notes at `base`, read each once (so Redis has it); their ids."""
    script = f"""
import json, urllib.request
ids = []
for i in range({count}):
    req = urllib.request.Request("{base}/api/v1/notes", method="POST",
        data=json.dumps({{"title": "bench %d" % i, "body": "x" * 200}}).encode(), headers={{"Content-Type": "application/json"}})
    ids.append(json.load(urllib.request.urlopen(req, timeout=10))["id"])
for i in ids:
    urllib.request.urlopen("{base}/api/v1/notes/%d" % i, timeout=10).read()
print(json.dumps(ids))
"""
    _, text, _ = sh(["docker", "exec", CLIENT, "python3", "-c", script])
    return json.loads(text.strip().splitlines()[-1])


def phase_load(args, out):
    sh(["docker", "cp", str(ROOT / "benchmarks" / "userload.py"), f"{CLIENT}:/root/userload.py"])
    with client_sources(args.sources) as sources:
        run_load(args, out, sources)


def run_load(args, out, sources):
    lb, direct = f"https://{SITE}", f"http://{APP}:8000"
    ids, asset = capacity_setup()
    out["setup"] = {"client": CLIENT, "client_addresses": len(sources), "users": args.users,
                    "interval_s": args.interval, "duration_s": args.duration, "api_notes": len(ids),
                    "static_asset": asset}
    runs = {
        "lb_health": [f"{lb}/health"],
        "lb_static": [f"{lb}{asset}"],
        "lb_api": [f"{lb}/api/v1/notes/{i}" for i in ids],
        "direct_health": [f"{direct}/health"],
        "direct_api": [f"{direct}/api/v1/notes/{i}" for i in ids],
    }
    for name, urls in runs.items():
        # the log lines of the API run's minute reach the log host while it serves (and carries the client)
        stop = threading.Event()
        shipping = concurrent.futures.ThreadPoolExecutor(1).submit(shipping_delays, stop) if name == "lb_api" else None
        # through the load balancer from many client addresses (its per-address limits
        # stay on); straight at the app host from the client's own (no limits there)
        out[name] = userload(name, urls, args.users, args.interval, args.duration,
                             sources=sources if name.startswith("lb_") else ())
        if shipping:
            stop.set()
            out["log_shipping"] = shipping.result()
        time.sleep(1)  # the client has closed its connections; new ones come from fresh ports
    for what in ("health", "api"):
        lb_run, direct_run = out[f"lb_{what}"], out[f"direct_{what}"]
        out[f"proxy_cost_{what}"] = {
            q: ratio(lb_run["latency_ms"][q], direct_run["latency_ms"][q]) for q in ("p50", "p95", "p99")}
    api = out["lb_api"]
    out["target"] = {
        "what": "API p95 < 500 ms with 1000 concurrent users and no errors",
        "users": api["users"], "p95_ms": api["latency_ms"]["p95"],
        "errors": api["errors"] + api["non_2xx"],
        "met": api["users"] >= 1000 and api["latency_ms"]["p95"] is not None
        and api["latency_ms"]["p95"] < 500 and api["errors"] + api["non_2xx"] == 0,
    }


# the capacity phase: a stepped open-model load per endpoint, until it bends
# a step past this p99 or with more than this share of its requests failed ends the endpoint's steps
CAPACITY_P99_MS, CAPACITY_FAILED_SHARE = report.P99_MS, report.FAILED_SHARE
TARGET_P95_MS = 500         # the plan's API target: the highest rate that kept p95 under it, and the failures under


def capacity_endpoints(lb, direct, asset, ids):
    """(key, GET urls, POST urls, through the load balancer) of the capacity phase, in the order of its tables."""
    reads = [f"/api/v1/notes/{i}" for i in ids]
    return (("lb_health", [f"{lb}/health"], [], True),
            ("lb_static", [f"{lb}{asset}"], [], True),
            ("lb_api_read", [lb + r for r in reads], [], True),
            ("lb_api_write", [], [f"{lb}/api/v1/notes"], True),
            ("direct_health", [f"{direct}/health"], [], False),
            ("direct_api_read", [direct + r for r in reads], [], False),
            ("direct_api_write", [], [f"{direct}/api/v1/notes"], False))


def bent(step):
    """Whether a capacity step is past the limit: p99 over CAPACITY_P99_MS or too many failed requests."""
    p99 = step["latency_ms"]["p99"]
    return p99 is None or p99 > CAPACITY_P99_MS or step["failed_share"] > CAPACITY_FAILED_SHARE


def within_target(step):
    p95 = step["latency_ms"]["p95"]
    return p95 is not None and p95 < TARGET_P95_MS and step["failed_share"] <= CAPACITY_FAILED_SHARE


def capacity_run(args, label, gets, posts, sources, hosts):
    """Steps of rising arrival rate (x args.capacity_factor from args.capacity_start) at GETS and POSTS until one
    bends (or args.capacity_steps ran): per step the rate asked for and achieved, latencies, failures, the client's
    CPU and each host's CPU (cores: CPU seconds per second of the step). The highest rate within the target."""
    steps, rate = [], args.capacity_start
    users = max(args.capacity_users, len(sources))
    while len(steps) < args.capacity_steps:
        before = cpu_snapshot(hosts)
        result = userload(f"capacity-{label}-{len(steps) + 1}", gets, users, users / rate, args.capacity_step_s,
                          sources=sources, processes=args.capacity_processes, posts=posts)
        used = cpu_used(before, cpu_snapshot(hosts))
        seconds = max(result["duration_s"], 1e-3)
        failed = result["errors"] + result["non_2xx"]
        step = {"target_rps": round(rate, 1), "achieved_rps": result["achieved_rate_rps"], "sent": result["sent"],
                "errors": result["errors"], "non_2xx": result["non_2xx"],
                "failed_share": round(failed / result["sent"], 5) if result["sent"] else 1.0,
                "latency_ms": result["latency_ms"], "by_status": result["by_status"],
                "client_cpu_cores": result["client"]["cpu_cores"], "client_processes": result["client"]["processes"],
                "hosts_cpu_cores": {name: round(cpu_s / seconds, 2) for name, cpu_s in used["hosts"].items()
                                    if name != CLIENT}}
        steps.append(step)
        time.sleep(1)  # the client has closed its connections
        if bent(step):
            break
        rate *= args.capacity_factor
    best = max((step for step in steps if within_target(step)), key=lambda step: step["achieved_rps"], default=None)
    last = steps[-1]
    busiest = max(last["hosts_cpu_cores"].items(), key=lambda item: item[1], default=(None, None))
    return {"steps": steps, "users": users, "sources": len(sources) or 1,
            "max_rps_within_target": best["achieved_rps"] if best else None,
            "bent": bent(last), "busiest_host_at_last_step": busiest[0],
            "busiest_host_cpu_cores": busiest[1], "client_cpu_cores_at_last_step": last["client_cpu_cores"]}


def capacity_setup():
    """Notes to read and the static asset's path. The notes are created straight at the app host (the load
    balancer would rate-limit one client's burst) and read once, so Redis has them."""
    ids = api_note_urls(f"http://{APP}:8000", 100)
    asset = re.search(r'src="(/assets/[^"]+\.js)"', client_get(f"https://{SITE}/")).group(1)
    return ids, asset


def nginx_api_rate():
    """The per-address API rate limit of the running load balancer (its limit_req_zone)."""
    config = dexec(WEB, "nginx -T 2>/dev/null")[1]
    return re.search(r"limit_req_zone \S+ zone=teamflow_api:\S+ rate=(\S+);", config).group(1)


def phase_capacity(args, out):
    sh(["docker", "cp", str(ROOT / "benchmarks" / "userload.py"), f"{CLIENT}:/root/userload.py"])
    ids, asset = capacity_setup()
    hosts = inventory_hosts([LAB_INVENTORY])
    out["setup"] = {"client": CLIENT, "client_addresses": args.capacity_sources, "users": args.capacity_users,
                    "client_processes": args.capacity_processes, "start_rps": args.capacity_start,
                    "factor": args.capacity_factor, "step_s": args.capacity_step_s, "max_steps": args.capacity_steps,
                    "bend": f"p99 > {CAPACITY_P99_MS} ms or more than {CAPACITY_FAILED_SHARE:.1%} failed",
                    "target": f"p95 < {TARGET_P95_MS} ms and at most {CAPACITY_FAILED_SHARE:.1%} failed",
                    "app_hosts": len(inventory_hosts([LAB_INVENTORY], "app")), "static_asset": asset,
                    "api_rate_limit_per_address": nginx_api_rate()}
    with client_sources(args.capacity_sources) as sources:
        for key, gets, posts, through_lb in capacity_endpoints(f"https://{SITE}", f"http://{APP}:8000", asset, ids):
            out[key] = capacity_run(args, key, gets, posts, sources if through_lb else (), hosts)
        out["connections"] = held_connections(args, asset, sources)


def nginx_memory_kib(name):
    """Resident memory of the nginx processes of a web host (KiB, proportional set size: shared pages split)."""
    _, text, _ = dexec(name, "for p in $(pgrep -x nginx); do awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup; done")
    return sum(int(v) for v in text.split())


def held_connections(args, asset, sources):
    """Keep-alive connections held at the load balancer at a low rate, rising to args.connections: for each
    count, whether every request was answered and on the connection it opened (no reconnect), the connections
    the address holder's nginx had open while they were held and what its memory grew by."""
    holder, = vip_holders()
    results = []
    for count in args.connections:
        interval = args.connections_interval_s
        label = f"connections-{count}"
        stop = f"/root/{label}.stop"
        dexec(CLIENT, f"rm -f {stop} /root/{label}.json")
        idle_kib = nginx_memory_kib(holder)
        userload(label, [f"https://{SITE}{asset}"], count, interval, interval * 3, sources=sources,
                 processes=args.capacity_processes, background=True, stop_file=stop)
        time.sleep(interval + 3)  # every user has opened its connection
        _, text, _ = dexec(holder, "ss -Htn state established '( sport = :443 )' | wc -l")
        held_kib = nginx_memory_kib(holder)
        result = None
        for _ in range(int(interval * 3) + 120):
            rc, text_out, _ = dexec(CLIENT, f"cat /root/{label}.json", check=False)
            if rc == 0 and text_out.strip().endswith("}"):
                result = json.loads(text_out)
                break
            time.sleep(1)
        if result is None:
            dexec(CLIENT, f"touch {stop}")
            raise RuntimeError(f"the connections run of {count} wrote no result (/root/{label}.json on {CLIENT})")
        failed = result["errors"] + result["non_2xx"]
        results.append({"users": count, "rate_rps": round(count / interval, 1), "sent": result["sent"],
                        "failed": failed, "error_kinds": result["error_kinds"], "reconnects": result["reconnects"],
                        "client_max_open": result["max_open_connections"], "server_established": int(text.strip()),
                        "nginx_kib_idle": idle_kib, "nginx_kib_held": held_kib,
                        "nginx_kib_per_connection": round((held_kib - idle_kib) / count, 1),
                        "latency_ms": result["latency_ms"]})
        time.sleep(2)
        if failed or result["reconnects"]:
            break
    return {"holder": holder, "steps": results, "max_held_without_errors": report.connections_held(results)}


def shipping_delays(stop, every=1.0, grace=30.0):
    """Until STOP is set: a line every EVERY s on the next host of LOG_SENDERS, and how long until the log host's
    search (teamflow-logs) finds each; then GRACE s more for the last ones. The figures: lines written, found,
    p50/p95/max seconds from its `logger` being started to the search finding it."""
    run = f"shipdelay-{os.getpid()}-{int(time.time())}"
    sent, found = {}, {}
    done = threading.Event()

    def write():
        number = 0
        while not stop.is_set():
            number += 1
            sent[number] = time.monotonic()
            sh(["docker", "exec", LOG_SENDERS[number % len(LOG_SENDERS)], "logger", "-t", "teamflow-bench",
                f"{run} {number}"], check=False)
            stop.wait(max(0.0, every - (time.monotonic() - sent[number])))
        done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    deadline = None
    while True:
        _, text, _ = sh(["docker", "exec", LOG_HOST, "teamflow-logs", "--json", "--ident", "teamflow-bench",
                         "--grep", run, "--since", "30m"], check=False)
        now = time.monotonic()
        for line in text.splitlines():
            number = int(json.loads(line)["message"].split()[-1])
            found.setdefault(number, now)
        if done.is_set():
            deadline = deadline or now + grace
            if len(found) >= len(sent) or now > deadline:
                break
        time.sleep(0.25)
    delays = sorted(found[number] - sent[number] for number in found if number in sent)
    return {"lines": len(sent), "found": len(found), "senders": list(LOG_SENDERS), "every_s": every,
            "p50_s": openload.percentile(delays, 50), "p95_s": openload.percentile(delays, 95),
            "max_s": round(delays[-1], 2) if delays else None}


def deploy_under_load(label, version, ids, sources, playbook_name, extra=()):
    """Run PLAYBOOK_NAME (deploy.yml to VERSION, or rollback.yml, which goes back to it) under steady load."""
    lb = f"https://{SITE}"
    stop = f"/root/{label}.stop"
    dexec(CLIENT, f"rm -f {stop} /root/{label}.json")
    urls = [f"{lb}/api/v1/notes/{i}" for i in ids[:20]] + [f"{lb}/health"]
    userload(label, urls, 100, 2, 1800, sources=sources, background=True, stop_file=stop)
    time.sleep(3)  # every user has sent its first request (one per 2 s each) before the playbook starts
    text = ""
    try:
        run = playbook(label, playbook_name, extra=extra)
    finally:
        time.sleep(3)
        dexec(CLIENT, f"touch {stop}")
        for _ in range(60):
            rc, text, _ = dexec(CLIENT, f"cat /root/{label}.json", check=False)
            if rc == 0 and text.strip().endswith("}"):
                break
            time.sleep(1)
    if not text.strip().endswith("}"):
        raise RuntimeError(f"the load during the deploy to {version} wrote no result (/root/{label}.json on {CLIENT})")
    load = json.loads(text)
    return {"playbook": playbook_name, "version": version, "app_hosts": len(inventory_hosts([LAB_INVENTORY], "app")),
            "deploy_wall_s": run["wall_s"], "deploy_tasks": run["tasks"],
            "load": load, "failed_requests": load["errors"],
            "status_5xx": sum(n for code, n in load["by_status"].items() if code.startswith("5"))}


def phase_deploy(args, out):
    sh(["docker", "cp", str(ROOT / "benchmarks" / "userload.py"), f"{CLIENT}:/root/userload.py"])
    ids = api_note_urls(f"http://{APP}:8000", 20)
    _, text, _ = sh(["ansible-inventory", "-i", str(LAB_INVENTORY), "--host", APP], env=ansible_env())
    lab_version = json.loads(text)["app_version"]
    with client_sources(args.sources) as sources:
        out[f"to_{args.deploy_version}"] = deploy_under_load("deploy-new", args.deploy_version, ids, sources, "deploy.yml",
                                                             extra=("-e", f"app_version={args.deploy_version}"))
        # rollback.yml: each host back to the release before (the lab's), the way an
        # operator undoes a deploy; the lab stays what inventories/lab says
        out[f"rollback_to_{lab_version}"] = deploy_under_load("deploy-rollback", lab_version, ids, sources, "rollback.yml")
    for host in inventory_hosts([LAB_INVENTORY], "app"):
        running = json.loads(client_get(f"http://{host}:8000/health"))["version"]
        if running != lab_version:
            raise RuntimeError(f"{host} runs {running} after rollback.yml, not {lab_version}")


@lru_cache(maxsize=None)
def database_hosts():
    return tuple(inventory_hosts([LAB_INVENTORY], "db_primary") + inventory_hosts([LAB_INVENTORY], "db_replica"))


def leader(timeout=90):
    """The database host that takes writes (the Patroni cluster's leader); waits up to TIMEOUT s for one."""
    deadline = time.monotonic() + timeout
    while True:
        for name in database_hosts():
            rc, out, _ = dexec(name, "runuser -u postgres -- psql -XAtq -c 'SELECT pg_is_in_recovery()'", check=False)
            if rc == 0 and out.strip() == "f":
                return name
        if time.monotonic() > deadline:
            raise RuntimeError(f"no database host takes writes after {timeout} s")
        time.sleep(1)


def streams(name):
    """Whether NAME is a replica whose WAL receiver streams."""
    rc, out, _ = dexec(name, "runuser -u postgres -- psql -XAtq -c "
                       "\"SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')\"", check=False)
    return rc == 0 and out.strip() == "streaming"


FAILOVER_RATE = 9  # requests/s: /health, a list of notes, a new note in turn (6/s on /api/, under nginx's 10/s)


def container_address(name):
    return sh(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name])[1].strip()


def load_result(label, seconds):
    """The summary openload writes on the client at the end of a run of SECONDS (waited for)."""
    for _ in range(seconds + 60):
        rc, text, _ = dexec(FAILOVER_CLIENT, f"cat /root/{label}.json", check=False)
        if rc == 0 and text.strip().endswith("}"):
            return json.loads(text)
        time.sleep(1)
    raise RuntimeError(f"the load during {label} wrote no result (/root/{label}.json on {FAILOVER_CLIENT})")


def fault_under_load(label, seconds, fault):
    """Load through the load balancer for SECONDS; FAULT() runs after 5 s and returns its time. The figures."""
    lb = f"https://{SITE}"
    read, write = f"{lb}/api/v1/notes?limit=5", f"{lb}/api/v1/notes"
    dexec(FAILOVER_CLIENT, f"rm -f /root/{label}.json /root/{label}.written")
    sh(["docker", "exec", "-d", FAILOVER_CLIENT, "python3", "/root/openload.py", "--rate", str(FAILOVER_RATE),
        "--duration", str(seconds), "--timeout", "40", "--cafile", "/root/pebble-root.pem", "--url", f"{lb}/health",
        "--url", read, "--post", write, "--out", f"/root/{label}.json", "--written", f"/root/{label}.written"])
    time.sleep(5)
    before = leader()
    fault_at = fault(before)
    summary = load_result(label, seconds)
    figures, acknowledged = openload.fault_figures(summary, dexec(FAILOVER_CLIENT, f"cat /root/{label}.written")[1],
                                                   fault_at, read, write)
    after = leader()
    present = int(psql("SELECT count(*) FROM notes WHERE id = ANY(string_to_array('%s', ',')::bigint[])"
                       % ",".join(map(str, acknowledged or [0])), database="teamflow", host=after))
    figures.update(leader_before=before, leader_after=after, lost_writes=len(acknowledged) - present,
                   latency_ms=summary["latency_ms"])
    return figures


def rejoin_seconds(name, since, timeout=120):
    """Seconds from SINCE until NAME streams as a replica; None if not within TIMEOUT."""
    while time.time() - since < timeout:
        if streams(name):
            return round(time.time() - since, 1)
        time.sleep(1)
    return None


def phase_failover(args, out):
    sh(["docker", "cp", str(ROOT / "benchmarks" / "openload.py"), f"{FAILOVER_CLIENT}:/root/openload.py"])
    dexec(FAILOVER_CLIENT, "curl -sS --cacert /etc/pebble/ca.crt -o /root/pebble-root.pem https://tf-acme:15000/roots/0")
    out["setup"] = {"client": FAILOVER_CLIENT, "rate_rps": FAILOVER_RATE, "database_hosts": list(database_hosts())}

    def switchover(old):
        at = time.time()
        out["switchover_playbook"] = playbook("failover-switchover", "switchover.yml")
        return at
    out["switchover"] = fault_under_load("failover-switchover", 40, switchover)
    out["switchover"]["rejoin_s"] = rejoin_seconds(out["switchover"]["leader_before"], time.time())

    def kill9(old):
        pid = dexec(old, "head -1 /var/lib/postgresql/*/main/postmaster.pid")[1].strip()
        at = time.time()
        dexec(old, f"kill -9 {pid}")
        return at
    out["kill9"] = fault_under_load("failover-kill9", 30, kill9)
    replica = next(name for name in database_hosts() if name != out["kill9"]["leader_after"])
    out["kill9"]["rejoin_s"] = rejoin_seconds(replica, time.time())

    stopped = {}

    def host_stopped(old):
        stopped["name"], stopped["address"] = old, container_address(old)
        at = time.time()
        sh(["docker", "kill", old])
        return at
    try:
        out["host_stopped"] = fault_under_load("failover-host-stopped", 40, host_stopped)
    finally:
        if stopped:
            sh(["docker", "start", stopped["name"]])
    started = time.time()
    if container_address(stopped["name"]) != stopped["address"]:
        raise RuntimeError(f"{stopped['name']} came back with another address")
    out["host_stopped"]["rejoin_s"] = rejoin_seconds(stopped["name"], started)
    faults = [out[key] for key in ("switchover", "kill9", "host_stopped")]
    out["target"] = {
        "what": "writes back within 30 s, 0 lost writes, 0 failed reads; 0 failed requests on a switchover; "
                "the old leader streams within 60 s",
        "met": all(f["seconds_to_first_write"] is not None and f["seconds_to_first_write"] <= 30
                   and f["lost_writes"] == 0 and f["failed_reads"] == 0
                   and f["rejoin_s"] is not None and f["rejoin_s"] <= 60 for f in faults)
        and out["switchover"]["failed"] == 0,
    }


def app_healthy(name):
    """NAME's own /health says ok (asked from the web host, the firewall's path to it)."""
    rc, text, _ = dexec(WEB, f"python3 -c \"import urllib.request as u; print(u.urlopen('http://{name}:8000/health', "
                             f"timeout=5).read().decode())\"", check=False)
    return rc == 0 and '"status":"ok"' in text.replace(" ", "")


def app_fault_under_load(label, seconds, fault, undo, whole):
    """Load through the load balancer for SECONDS (/health, a note by id through the cache, a list of notes, a
    write); FAULT() after 5 s, UNDO() 5 s before the load ends (None: nothing to undo); then the seconds from
    UNDO (or FAULT) until WHOLE(). openload's outage figures."""
    lb = f"https://{SITE}"
    read, write = f"{lb}/api/v1/notes?limit=5", f"{lb}/api/v1/notes"
    note = json.loads(dexec(FAILOVER_CLIENT, f"curl -sS --cacert /root/pebble-root.pem -H 'Content-Type: application/json'"
                                             f" -d '{{\"title\": \"{label}\"}}' {write}")[1])
    by_id = f"{lb}/api/v1/notes/{note['id']}"
    dexec(FAILOVER_CLIENT, f"curl -sS -o /dev/null --cacert /root/pebble-root.pem {by_id}; rm -f /root/{label}.json")
    sh(["docker", "exec", "-d", FAILOVER_CLIENT, "python3", "/root/openload.py", "--rate", str(FAILOVER_RATE),
        "--duration", str(seconds), "--timeout", "10", "--cafile", "/root/pebble-root.pem", "--url", f"{lb}/health",
        "--url", by_id, "--url", read, "--post", write, "--out", f"/root/{label}.json"])
    time.sleep(5)
    started = fault_at = time.time()
    fault()
    undo_at = None
    if undo:
        time.sleep(seconds - 10)
        started = undo_at = time.time()
        undo()
    whole_s = None
    while time.time() - started < 60:
        if whole():
            whole_s = round(time.time() - started, 1)
            break
        time.sleep(0.5)
    return openload.outage_figures(load_result(label, seconds), whole_s, lb, fault_at, undo_at)


def partition_database(on):
    """Drop every packet from the app hosts to PostgreSQL (ON), or stop dropping."""
    rule = "ip daddr { %s } tcp dport 5432 drop" % ", ".join(container_address(name) for name in database_hosts())
    for name in APPS:
        if on:
            dexec(name, "nft add table inet bench_partition && nft add chain inet bench_partition out "
                        f"'{{ type filter hook output priority -10; }}' && nft add rule inet bench_partition out {rule}")
        else:
            dexec(name, "nft delete table inet bench_partition", check=False)


def lab_secret(name):
    """A value of the lab's vault (never logged)."""
    plain = sh(["ansible-vault", "view", "--vault-password-file", str(VAULT),
                str(LAB_INVENTORY / "group_vars" / "all" / "vault.yml")])[1]
    return re.search(rf"^{name}: (\S+)$", plain, re.M).group(1)  # lab/vault.py's values are URL-safe tokens


def redis_admin(name, command, port=6379):
    """redis-cli as the admin user on NAME (port 26379: its sentinel); the output lines."""
    script = f"REDISCLI_AUTH={shlex.quote(lab_secret('vault_redis_admin_password'))} redis-cli --no-auth-warning " \
             f"--user admin -p {port} {command}"
    return dexec(name, script, check=False)[1].split()


def redis_master_failover_under_load():
    """redis-server stopped on the master (CACHE) under load: the seconds until the sentinels name the replica,
    the figures of the load; CACHE, started again, replicates; then the lab is failed back to CACHE."""
    seen = {}

    def fault():
        stopped = time.monotonic()
        dexec(CACHE, "systemctl stop redis-server")
        while time.monotonic() - stopped < 30:
            if redis_admin(REPLICA_CACHE, "ROLE")[:1] == ["master"] and redis_admin(
                    "tf-mon1", "SENTINEL GET-MASTER-ADDR-BY-NAME teamflow", 26379)[:1] == [container_address(REPLICA_CACHE)]:
                seen["new_master_s"] = round(time.monotonic() - stopped, 1)
                break
            time.sleep(0.2)

    figures = app_fault_under_load(
        "faults-redis-master-stopped", 40, fault, lambda: dexec(CACHE, "systemctl start redis-server"),
        lambda: redis_admin(CACHE, "ROLE")[:2] == ["slave", container_address(REPLICA_CACHE)]
        and all(app_healthy(name) for name in APPS))
    figures["new_master_s"] = seen.get("new_master_s")
    redis_admin("tf-mon1", "SENTINEL FAILOVER teamflow", 26379)
    began = time.monotonic()
    while time.monotonic() - began < 60 and redis_admin(CACHE, "ROLE")[:1] != ["master"]:
        time.sleep(0.5)
    return figures


WEBS = ("tf-web1", "tf-web2")


def web_vip():
    """The web tier's shared address (molecule/site/create.yml chose it)."""
    return (ROOT / ".lab" / "web-vip").read_text().strip().split("/")[0]


def vip_holders():
    return [name for name in WEBS if dexec(name, f"ip -o -4 addr show to {web_vip()}", check=False)[1].strip()]


def keepalived_state(name):
    found = re.search(r"^keepalived_vrrp_state\{.*\} (\d)$", dexec(
        name, "cat /var/lib/prometheus/node-exporter/keepalived.prom", check=False)[1], re.M)
    return int(found.group(1)) if found else None


def web_failover_under_load(label, fault, restore, seconds=45):
    """Load through the shared address (the front page, /health, a list of notes) for SECONDS; FAULT(holder)
    after 5 s, RESTORE(holder) 15 s later. openload's outage figures, the seconds until the other web host held
    the address, until the first was a backup again, and whether the address stayed where it moved."""
    lb = f"https://{SITE}"
    holders = vip_holders()
    if len(holders) != 1:
        raise PhaseError(f"{label}: the shared address is held by {holders}, not by one web host")
    old, = holders
    new = next(name for name in WEBS if name != old)
    dexec(FAILOVER_CLIENT, f"rm -f /root/{label}.json")
    sh(["docker", "exec", "-d", FAILOVER_CLIENT, "python3", "/root/openload.py", "--rate", str(FAILOVER_RATE),
        "--duration", str(seconds), "--timeout", "10", "--cafile", "/root/pebble-root.pem", "--url", f"{lb}/",
        "--url", f"{lb}/health", "--url", f"{lb}/api/v1/notes?limit=5", "--out", f"/root/{label}.json"])
    time.sleep(5)
    started, fault_at = time.monotonic(), time.time()
    fault(old)
    moved_s = None
    while time.monotonic() - started < 20:
        if vip_holders() == [new]:
            moved_s = round(time.monotonic() - started, 1)
            break
        time.sleep(0.2)
    time.sleep(max(0, 15 - (time.monotonic() - started)))
    returned, restore_at = time.monotonic(), time.time()
    restore(old)
    backup_s = None
    while time.monotonic() - returned < 90:
        if keepalived_state(old) == 1:
            backup_s = round(time.monotonic() - returned, 1)
            break
        time.sleep(1)
    time.sleep(5)
    figures = openload.outage_figures(load_result(label, seconds), None, lb, fault_at, restore_at)
    figures.update(holder=old, new_holder=new, address_moved_s=moved_s, old_holder_backup_again_s=backup_s,
                   address_stayed=vip_holders() == [new])
    return figures


def start_container(name):
    sh(["docker", "start", name])
    sh(["docker", "exec", name, "systemctl", "is-system-running", "--wait"], check=False, timeout=120)


def phase_faults(args, out):
    sh(["docker", "cp", str(ROOT / "benchmarks" / "openload.py"), f"{FAILOVER_CLIENT}:/root/openload.py"])
    dexec(FAILOVER_CLIENT, "curl -sS --cacert /etc/pebble/ca.crt -o /root/pebble-root.pem https://tf-acme:15000/roots/0")
    out["setup"] = {"client": FAILOVER_CLIENT, "rate_rps": FAILOVER_RATE, "app_hosts": list(APPS), "cache": CACHE}
    every_app = lambda: all(app_healthy(name) for name in APPS)  # noqa: E731
    out["vip_nginx_stopped"] = web_failover_under_load(
        "faults-vip-nginx-stopped", lambda name: dexec(name, "systemctl stop nginx"),
        lambda name: dexec(name, "systemctl start nginx"))
    out["vip_host_stopped"] = web_failover_under_load(
        "faults-vip-host-stopped", lambda name: sh(["docker", "stop", name]), start_container)
    out["redis_master_stopped"] = redis_master_failover_under_load()
    out["redis_stopped"] = app_fault_under_load(
        "faults-redis-stopped", 40, lambda: [dexec(name, "systemctl stop redis-server") for name in CACHES],
        lambda: [dexec(name, "systemctl start redis-server") for name in CACHES], every_app)
    out["gunicorn_kill9"] = app_fault_under_load(
        "faults-gunicorn-kill9", 30,
        lambda: dexec(APP, "kill -9 $(systemctl show -p MainPID --value teamflow)"), None, lambda: app_healthy(APP))
    out["app_host_stopped"] = app_fault_under_load(
        "faults-app-host-stopped", 40, lambda: sh(["docker", "stop", "-t", "2", APP]),
        lambda: sh(["docker", "start", APP]), lambda: app_healthy(APP))
    try:
        out["database_unreachable"] = app_fault_under_load(
            "faults-database-unreachable", 35, lambda: partition_database(True), lambda: partition_database(False),
            every_app)
    finally:
        partition_database(False)

    def gets(figures):
        return [f for url, f in figures["by_url"].items() if not url.startswith("POST")]
    api = [f for url, f in out["database_unreachable"]["by_url"].items() if "/api/" in url]
    out["target"] = {
        "what": "The holder of the web tier's address: its nginx stopped, then its host stopped: under 1 second's "
                "worth of failed or non-2xx requests, the address on the other web host, and not back when the first "
                "returns; the Redis master stopped: 0 failed or non-2xx requests, a new master within 10 s, the old one a replica "
                "again when started; Redis stopped on "
                "every cache host: 0 failed or non-2xx requests; a Gunicorn master killed or an app host stopped: 0 failed "
                "GETs; the database unreachable: every request answered, every API request within 3 s; the other faults "
                "whole again within 10 s",
        "met": all(out[key]["failed"] + out[key]["non_2xx"] < FAILOVER_RATE and out[key]["address_moved_s"] is not None
                   and out[key]["address_stayed"] for key in ("vip_nginx_stopped", "vip_host_stopped"))
        and all(out[key]["failed"] == 0 and out[key]["non_2xx"] == 0 for key in ("redis_master_stopped", "redis_stopped"))
        and (out["redis_master_stopped"]["new_master_s"] or 99) <= 10
        and out["redis_master_stopped"]["whole_again_s"] is not None
        and all(f["failed"] == 0 for key in ("gunicorn_kill9", "app_host_stopped") for f in gets(out[key]))
        and out["database_unreachable"]["failed"] == 0 and all(f["latency_max_ms"] <= 3000 for f in api)
        and all(out[key]["whole_again_s"] is not None and out[key]["whole_again_s"] <= 10
                for key in ("redis_stopped", "gunicorn_kill9", "app_host_stopped", "database_unreachable")),
    }


def psql(sql, database="bench", label=None, check=True, host=None):
    """SQL as postgres on HOST, by default the leader."""
    return dexec(host or leader(), f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {database} "
                 f"-c {shlex.quote(sql)}", label=label, check=check)[1].strip()


def pgbackrest(*options, label=None):
    return dexec(leader(), "runuser -u postgres -- pgbackrest --stanza=%s %s" % (STANZA, " ".join(options)),
                 label=label)


def backup_info(label):
    _, text, _ = pgbackrest("--repo=1", f"--set={label}", "--output=json", "info")
    backup = json.loads(text)[0]["backup"][0]
    return {"label": label, "db_bytes": backup["info"]["size"], "repo_bytes": backup["info"]["repository"]["delta"]}


def newest_backup():
    _, text, _ = pgbackrest("--repo=1", "--output=json", "info")
    return json.loads(text)[0]["backup"][-1]["label"]


def wait_for_archive(timeout=900):
    """Until PostgreSQL has archived every WAL segment it finished; the seconds it took."""
    began = time.monotonic()
    psql("SELECT pg_switch_wal()")
    while time.monotonic() - began < timeout:
        done = psql("SELECT coalesce(last_archived_wal, '') >= pg_walfile_name(pg_current_wal_lsn() - 1) "
                    "FROM pg_stat_archiver")
        if done == "t":
            return round(time.monotonic() - began, 1)
        time.sleep(2)
    raise RuntimeError("the WAL archive did not catch up in %d s" % timeout)


def verify(label, queries, check_archive=True):
    """The verification restore (teamflow.platform.pgbackrest_verify) of repo1; its result."""
    module_args = json.dumps({
        "stanza": STANZA, "repo": 1, "max_full_age": 0, "max_age": 0, "check_archive": check_archive,
        "restore_test": True, "queries": queries})
    env = ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    rc, text, seconds = sh(["ansible", "-i", str(LAB_INVENTORY), VERIFY_HOST, "-b", "-m", "teamflow.platform.pgbackrest_verify",
                            "-a", module_args], label=label, check=False, env=env)
    result = first_json(text)["plays"][0]["tasks"][0]["hosts"][VERIFY_HOST]
    if rc != 0:
        raise RuntimeError("verification failed: %s" % result.get("msg"))
    return result, round(seconds, 1)


def backup_setup():
    """What the backups ran with: the primary's pgbackrest.conf (the [global] options the report names)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(dexec(leader(), "cat /etc/pgbackrest/pgbackrest.conf")[1])
    conf = parser["global"]
    return {"repo1_type": conf.get("repo1-type"), "repo1_cipher_type": conf.get("repo1-cipher-type", "none"),
            "process_max": int(conf.get("process-max", 1)), "backup_standby": conf.get("backup-standby") == "y",
            "incr_after_transactions": INCR_TRANSACTIONS}


def phase_backup(args, out):
    primary = leader()
    version = dexec(primary, "ls /usr/lib/postgresql | sort -n | tail -1")[1].strip()
    pgbench = f"/usr/lib/postgresql/{version}/bin/pgbench"
    psql("DROP DATABASE IF EXISTS bench", database="postgres")
    psql("CREATE DATABASE bench", database="postgres")
    _, _, seconds = dexec(primary, f"runuser -u postgres -- {pgbench} -q -i -s {args.pgbench_scale} -I dtGvp bench",
                          label="backup-pgbench-init")
    out["pgbench"] = {"scale": args.pgbench_scale, "init_s": round(seconds, 1),
                      "db_bytes": int(psql("SELECT pg_database_size('bench')")),
                      "archive_catch_up_s": wait_for_archive()}
    out["setup"] = backup_setup()
    out["compression"] = {}
    for ctype in ("gz", "lz4", "zst"):
        figures = {}
        _, _, seconds = pgbackrest("--repo=1", "--type=full", f"--compress-type={ctype}", "backup",
                                   label=f"backup-full-{ctype}")
        figures["full_s"] = round(seconds, 1)
        figures["full"] = backup_info(newest_backup())
        # the same amount of change before every incremental
        dexec(primary, f"runuser -u postgres -- {pgbench} -n -c 2 -t {INCR_TRANSACTIONS // 2} bench",
              label=f"backup-pgbench-{ctype}")
        _, _, seconds = pgbackrest("--repo=1", "--type=incr", f"--compress-type={ctype}", "backup",
                                   label=f"backup-incr-{ctype}")
        figures["incr_s"] = round(seconds, 1)
        figures["incr"] = backup_info(newest_backup())
        figures["full_mb_per_s"] = round(figures["full"]["db_bytes"] / 2**20 / figures["full_s"], 1)
        figures["full_ratio"] = round(figures["full"]["repo_bytes"] / figures["full"]["db_bytes"], 3)
        out["compression"][ctype] = figures
    gz = out["compression"]["gz"]
    for ctype, figures in out["compression"].items():
        figures["full_time_vs_gz"] = ratio(figures["full_s"], gz["full_s"])
        figures["full_size_vs_gz"] = ratio(figures["full"]["repo_bytes"], gz["full"]["repo_bytes"])
    accounts = args.pgbench_scale * 100000
    result, seconds = verify("backup-verify", [
        {"name": "pgbench accounts", "database": "bench", "sql": "SELECT count(*) FROM pgbench_accounts",
         "expected": str(accounts)}])
    out["verify"] = {"label": result["restore"]["label"], "restore_s": result["restore"]["restore_seconds"],
                     "start_s": result["restore"]["start_seconds"], "duration_s": result["restore"]["duration_seconds"],
                     "wall_s": seconds, "query": result["queries"][0]["actual"]}
    # the unit that runs the cluster (15 on bookworm, 17 on trixie): Patroni's, or Debian's without Patroni
    unit = f"patroni@{version}-main"
    if dexec(primary, f"systemctl is-active --quiet {unit}", check=False)[0] != 0:
        unit = f"postgresql@{version}-main"
    out["recovery_point"] = recovery_point(args, primary, unit)
    psql("DROP DATABASE IF EXISTS bench", database="postgres")


def recovery_point(args, primary, unit):
    """Commit a row every 0.2 s, kill the primary (its UNIT) hard, restore from the repository: seconds lost.

    Under Patroni a replica takes over meanwhile, and the killed host rejoins as a replica when it starts."""
    psql("CREATE TABLE rpo (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp())", host=primary)
    dexec(primary, "rm -f /root/rpo.log /root/rpo.stop")
    writer = ("while [ ! -e /root/rpo.stop ]; do runuser -u postgres -- psql -XAtq -d bench -c "
              "'INSERT INTO rpo DEFAULT VALUES RETURNING extract(epoch FROM ts)' >> /root/rpo.log 2>/dev/null; "
              "sleep 0.2; done")
    sh(["docker", "exec", "-d", primary, "bash", "-c", writer])
    archive_timeout = int(psql("SELECT setting FROM pg_settings WHERE name = 'archive_timeout'", host=primary))
    # commits for longer than one archive_timeout, so at least one timed WAL switch
    # falls inside them (the kill lands anywhere in the archive cycle either way);
    # a minute when the timeout is off (0)
    writes = args.rpo_write_seconds or 1.2 * archive_timeout or 60
    time.sleep(writes)
    dexec(primary, f"systemctl kill --signal=SIGKILL {unit}")
    killed = time.time()
    time.sleep(1)
    dexec(primary, "touch /root/rpo.stop")
    acknowledged = [float(x) for x in dexec(primary, "cat /root/rpo.log")[1].split()]
    try:
        result, seconds = verify("backup-rpo-restore", [
            {"name": "newest row", "database": "bench", "sql": "SELECT extract(epoch FROM max(ts)) FROM rpo"}],
            check_archive=False)
    finally:
        dexec(primary, f"systemctl start {unit}")
    restored = float(result["queries"][0]["actual"])
    lost = [ts for ts in acknowledged if ts > restored]
    return {"archive_timeout_s": archive_timeout, "writes_s": writes, "commits_acknowledged": len(acknowledged),
            "commits_lost": len(lost), "lost_s": round(max(acknowledged) - restored, 1),
            "killed_after_last_commit_s": round(killed - max(acknowledged), 1),
            "restore_duration_s": result["restore"]["duration_seconds"], "wall_s": seconds, "target_s": 60,
            "met": max(acknowledged) - restored < 60}


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def machine():
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, capture_output=True).stdout.strip()
    return {"cpus": os.cpu_count(), "memory_gib": round(total_kb / 2**20, 1), "kernel": platform.release(),
            "os": release.get("PRETTY_NAME", "").strip('"'), "commit": commit,
            "image": os.environ.get("MOLECULE_IMAGE", "")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated, of: " + ", ".join(PHASES))
    parser.add_argument("--users", type=int, default=1000, help="load: concurrent users (one connection each)")
    parser.add_argument("--interval", type=float, default=5, help="load: seconds between one user's requests")
    parser.add_argument("--duration", type=float, default=20, help="load: seconds of arrivals per run "
                        "(4 requests per user at the default interval: 4000 per endpoint)")
    parser.add_argument("--sources", type=int, default=40, help="load: client addresses the users come from")
    parser.add_argument("--capacity-start", type=float, default=100, help="capacity: requests/s of the first step")
    parser.add_argument("--capacity-factor", type=float, default=1.6, help="capacity: each step's rate over the last")
    parser.add_argument("--capacity-steps", type=int, default=9, help="capacity: most steps per endpoint")
    parser.add_argument("--capacity-step-s", type=float, default=5, help="capacity: seconds of arrivals per step")
    parser.add_argument("--capacity-users", type=int, default=300, help="capacity: users (keep-alive connections)")
    parser.add_argument("--capacity-processes", type=int, default=2, help="capacity: load client processes")
    parser.add_argument("--capacity-sources", type=int, default=300,
                        help="capacity: client addresses (nginx allows one address 10 API requests/s)")
    parser.add_argument("--connections", type=lambda text: [int(n) for n in text.split(",")],
                        default=[2500, 5000, 10000], help="capacity: keep-alive connections held, in steps")
    parser.add_argument("--connections-interval-s", type=float, default=10,
                        help="capacity: seconds between one held connection's requests (under nginx's keep-alive timeout)")
    parser.add_argument("--deploy-version", default="1.1.0", help="deploy: the release to deploy (then rolled back)")
    parser.add_argument("--pgbench-scale", type=int, default=150, help="backup: pgbench scale (15 MB each)")
    parser.add_argument("--rpo-write-seconds", type=float, help="backup: seconds of commits before the kill "
                        "(default: 1.2 x the primary's archive_timeout, 60 when it is 0)")
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error("unknown phases: " + ", ".join(sorted(unknown)))

    # make puts lab/bin first on PATH: its docker skips the daemon on `docker exec`, so a module run on a lab
    # host costs less than a connection to a real host does. The bench times what real hosts see.
    os.environ["PATH"] = os.pathsep.join(entry for entry in os.environ.get("PATH", "").split(os.pathsep)
                                         if entry and Path(entry).resolve() != ROOT / "lab" / "bin")
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "phases": {}, "errors": {}}
    if "lab" not in phases:  # a running lab (`make lab`): its hosts keep bytecode until told not to
        bytecode_cache_off(LAB_INVENTORY)
    for name in PHASES:
        if name not in phases:
            continue
        print(f"bench: {name} ...", flush=True)
        began = time.monotonic()
        out = results["phases"][name] = {}
        try:
            globals()[f"phase_{name}"](args, out)
        except Exception as exc:  # noqa: BLE001 - a failed phase is reported, the others still run
            if isinstance(exc, PhaseError) and exc.figures:
                out["failed_run"] = exc.figures
            results["errors"][name] = str(exc)
            traceback.print_exc()
        out["phase_s"] = round(time.monotonic() - began, 1)
        print(f"bench: {name} took {out['phase_s']} s", flush=True)
    results["total_s"] = round(sum(p["phase_s"] for p in results["phases"].values()), 1)

    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    dated = RESULTS / (started.strftime("%Y%m%dT%H%M%SZ") + ".json")
    dated.write_text(text)
    plots.write_all(results, RESULTS, dated.stem)
    print(report.table(results))
    # latest.json (and so the README's figures and docs/benchmarks.md's pictures) is the newest complete run
    if phases == list(PHASES) and not results["errors"]:
        (RESULTS / "latest.json").write_text(text)
        plots.write_all(results, RESULTS, "latest")
        print(f"bench: wrote {dated.relative_to(ROOT)} and latest.json; README figures: benchmarks/report.py --readme README.md --readme docs/benchmarks.md")
    else:
        print(f"bench: wrote {dated.relative_to(ROOT)} (not a complete run: latest.json unchanged)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
