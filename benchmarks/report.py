#!/usr/bin/env python3
"""The table of a benchmark run (benchmarks/bench.py's JSON), as text or Markdown.

    benchmarks/report.py [benchmarks/results/latest.json]            # text
    benchmarks/report.py --markdown [FILE]                            # Markdown
    benchmarks/report.py --readme README.md [FILE]                    # rewrite a page's figures
    benchmarks/report.py --readme README.md --readme docs/benchmarks.md

Every figure comes from the JSON; nothing here is typed in by hand. --readme
replaces what is between `<!-- bench:begin -->` and `<!-- bench:end -->` (every
table) and between `<!-- bench-summary:begin -->` and `<!-- bench-summary:end -->`
(the load and rolling-deploy tables, for the README).
"""

import argparse
import json
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "results" / "latest.json"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SUMMARY_BEGIN, SUMMARY_END = "<!-- bench-summary:begin -->", "<!-- bench-summary:end -->"
# the load phase's runs, in the order of the tables and plots
LOAD_RUNS = (("lb_health", "/health via load balancer (HTTPS)"),
             ("lb_static", "static asset via load balancer (HTTPS)"),
             ("lb_api", "API, PostgreSQL through Redis, via load balancer (HTTPS)"),
             ("direct_health", "/health at one app host (HTTP)"),
             ("direct_api", "API at one app host (HTTP)"))
# the capacity phase's bend (bench.py ends an endpoint's steps past it)
P99_MS, FAILED_SHARE = 500, 0.001
# the capacity phase's endpoints, in the order of the tables and plots
CAPACITY_RUNS = (("lb_health", "/health via load balancer"), ("lb_static", "static asset via load balancer"),
                 ("lb_api_read", "API read via load balancer"), ("lb_api_write", "API write via load balancer"),
                 ("direct_health", "/health at one app host"), ("direct_api_read", "API read at one app host"),
                 ("direct_api_write", "API write at one app host"))
# the parts of the run the summary shows
SUMMARY_TITLES = ("Load", "Capacity (", "Rolling deploy")


def fmt(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        value = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return f"{value}{unit}"


def mib(value):
    return None if value is None else round(value / 2**20, 1)


def backup_setup_note(setup):
    """What the backups ran with, as the bench read it from the primary's pgbackrest.conf."""
    if not setup:  # a result from before the bench recorded it
        return ""
    cipher = setup["repo1_cipher_type"]
    return (f"Incremental after {setup['incr_after_transactions']} pgbench transactions. repo1 ({setup['repo1_type']}, "
            f"{'encrypted, ' + cipher if cipher != 'none' else 'not encrypted'}), process-max {setup['process_max']}, "
            f"backup from {'the replica (backup-standby)' if setup['backup_standby'] else 'the primary'}.")


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def scaled_app_hosts(scale):
    """App hosts of the scale phase (6 in results from before it recorded them)."""
    return scale.get("app_hosts", 6 if "noop_6_app_mitogen" in scale else None)


def converge_runs(scaled):
    """(phase, key, what) of the site.yml runs, in the order of the table and the picture."""
    return (("converge", "fresh", "site.yml, fresh lab (2 app hosts)"),
            ("converge", "noop", "site.yml, no-op rerun (2 app hosts)"),
            ("converge", "noop_mitogen", "site.yml, no-op rerun (2 app hosts)"),
            ("scale", "scale_out", f"site.yml, {(scaled or 2) - 2} fresh app hosts join ({scaled} app hosts)"),
            ("scale", "noop_scaled_mitogen", f"site.yml, no-op rerun ({scaled} app hosts)"),
            ("scale", "noop_6_app_mitogen", "site.yml, no-op rerun (6 app hosts)"))


def connections_held(steps):
    """The most keep-alive connections of the steps that were held: every request answered, none reconnected
    (nginx out of connections closes idle ones, and the client opens them again)."""
    return max((step["users"] for step in steps if step["failed"] == 0 and step["reconnects"] == 0), default=0)


def capacity_sections(results):
    """The capacity phase: a line per endpoint, the held connections, each step."""
    phases = results.get("phases", {})
    capacity, scale = phases.get("capacity", {}), phases.get("scale", {})
    setup = capacity.get("setup", {})
    rows, steps = [], []
    for key, what in CAPACITY_RUNS:
        run = capacity.get(key)
        if not run:
            continue
        last = run["steps"][-1]
        rows.append([what, len(run["steps"]), fmt(run["max_rps_within_target"]), fmt(last["target_rps"]),
                     fmt(last["achieved_rps"]), fmt(last["latency_ms"]["p99"]), f"{last['failed_share']:.2%}",
                     fmt(run["bent"]), f"{run['busiest_host_at_last_step']} {fmt(run['busiest_host_cpu_cores'])}",
                     fmt(run["client_cpu_cores_at_last_step"]),
                     fmt(round(sum(last["hosts_cpu_cores"].values()) + (last["client_cpu_cores"] or 0), 2))])
        for number, step in enumerate(run["steps"], 1):
            lat = step["latency_ms"]
            steps.append([what, number, fmt(step["target_rps"]), fmt(step["achieved_rps"]), fmt(lat["p50"]),
                          fmt(lat["p95"]), fmt(lat["p99"]), fmt(lat["max"]), step["errors"], step["non_2xx"],
                          fmt(step["client_cpu_cores"]),
                          ", ".join(f"{h} {fmt(c)}" for h, c in sorted(step["hosts_cpu_cores"].items(),
                                                                       key=lambda item: -item[1])[:3])])
    out = []
    if rows:
        notes = [f"Client: {setup.get('client')} (a lab container on the same {results.get('machine', {}).get('cpus')} CPUs "
                 f"as the stack), {setup.get('users')} users on keep-alive connections split among "
                 f"{setup.get('client_processes')} processes; through the load balancer from "
                 f"{setup.get('client_addresses')} addresses (nginx's API limit per address, "
                 f"{setup.get('api_rate_limit_per_address')}, caps the API through it near "
                 f"{setup.get('client_addresses')} x that). Steps of {fmt(setup.get('step_s'))} s of arrivals from "
                 f"{fmt(setup.get('start_rps'))} requests/s, x{fmt(setup.get('factor'))} each, until {setup.get('bend')} "
                 f"(bent = the last step passed that; no = {setup.get('max_steps')} steps without). Highest within "
                 f"target = the highest achieved rate of a step with {setup.get('target')}. Busiest host and client "
                 "= CPU cores used (CPU seconds per second) at the last step: when the client's cores near its "
                 "processes' count, the client is the limit; all cores = the stack's hosts and the client together, "
                 "which share the machine's CPUs: near their count, the machine is the limit."]
        more = scale.get("lb_api_read")
        two = capacity.get("lb_api_read")
        if more and two:
            notes.append(f"Scale-out, API reads through the load balancer: {fmt(two['max_rps_within_target'])} requests/s "
                         f"within target with {setup.get('app_hosts')} app hosts, {fmt(more['max_rps_within_target'])} with "
                         f"{scale.get('app_hosts')}: x{fmt(ratio(more['max_rps_within_target'], two['max_rps_within_target']))}")
        out.append(("Capacity (stepped open-model load until it bends; rates in requests/s, latency in ms)",
                    ["endpoint", "steps", "highest rps within target", "last step rps", "achieved rps", "p99 ms",
                     "failed", "bent", "busiest host (cores)", "client cores", "all cores"], rows, notes))
    connections = capacity.get("connections")
    if connections:
        held = [[r["users"], fmt(r["rate_rps"]), r["sent"], r["failed"], r["reconnects"], r["server_established"],
                 fmt(mib(r["nginx_kib_idle"] * 1024)), fmt(mib(r["nginx_kib_held"] * 1024)),
                 fmt(r["nginx_kib_per_connection"]), fmt(r["latency_ms"]["p99"])] for r in connections["steps"]]
        out.append(("Keep-alive connections held at the load balancer",
                    ["connections", "rate rps", "requests", "failed", "reconnects", "established at nginx",
                     "nginx MiB idle", "nginx MiB held", "KiB/connection", "p99 ms"], held,
                    [f"Each connection sends the static asset's request every {fmt(capacity.get('setup', {}).get('connections_interval_s', 10))} "
                     f"s (under nginx's keep-alive timeout), over TLS, to the address holder {connections['holder']}. "
                     "established = TCP connections on its port 443 while they were held; memory = proportional set "
                     f"size of its nginx processes. Held (0 failed, 0 reconnects): {connections_held(connections['steps'])}."]))
    if steps:
        out.append(("Capacity steps (latency in ms; CPU in cores)",
                    ["endpoint", "step", "rate rps", "achieved rps", "p50", "p95", "p99", "max", "errors", "non-2xx",
                     "client cores", "busiest hosts (cores)"], steps, []))
    return out


def sections(results):
    """(title, header, rows, notes) per part of the run."""
    phases = results.get("phases", {})
    out = []

    runs = []
    scaled = scaled_app_hosts(phases.get("scale", {}))
    for phase, key, what in converge_runs(scaled):
        run = phases.get(phase, {}).get(key)
        if run:
            runs.append([what, run["strategy"], run["hosts"], run["tasks"], run["task_results"], run["changed"],
                         run["failed"], fmt(run["wall_s"]), fmt(run["s_per_task"]), fmt(run["s_per_task_per_host"]),
                         fmt(run.get("controller_cpu_s")), fmt(run.get("hosts_cpu_s")),
                         fmt(run.get("controller_cpu_ms_per_result")), fmt(run.get("hosts_cpu_ms_per_result"))])
    if runs:
        notes = ["CPU: controller = ansible-playbook and every command it ran (its forks, the docker CLI), from the "
                 "kernel's accounting of the bench's children; hosts = the lab containers' cgroup CPU counters (the "
                 "modules and what they ran); ms/result = CPU milliseconds per task result."]
        converge, scale = phases.get("converge", {}), phases.get("scale", {})
        if converge.get("noop_mitogen_vs_default") is not None:
            notes.append("Mitogen / default strategy, no-op rerun with 2 app hosts: wall time "
                         f"x{fmt(converge['noop_mitogen_vs_default'])}")
            cpu = [converge[k].get("controller_cpu_s") for k in ("noop_mitogen", "noop")]
            if None not in cpu:
                notes.append(f"Mitogen / default strategy, no-op rerun: controller CPU x{fmt(ratio(*cpu))}, hosts CPU "
                             f"x{fmt(ratio(converge['noop_mitogen'].get('hosts_cpu_s'), converge['noop'].get('hosts_cpu_s')))}")
        more = scale.get("noop_scaled_mitogen") or scale.get("noop_6_app_mitogen")
        if more and converge.get("noop_mitogen"):
            two = converge["noop_mitogen"]
            notes.append(f"{scaled} / 2 app hosts, no-op rerun (Mitogen both): wall time x{fmt(ratio(more['wall_s'], two['wall_s']))}, "
                         f"hosts x{fmt(ratio(more['hosts'], two['hosts']))}, "
                         f"task results x{fmt(ratio(more['task_results'], two['task_results']))}")
        out.append(("Converge (ansible-playbook wall time; tasks = tasks started, from profile_tasks; task results = "
                    "per host ok+skipped+failed, from the recap)",
                    ["run", "strategy", "hosts", "tasks", "task results", "changed", "failed", "wall s", "s/task",
                     "s/task/host", "controller CPU s", "hosts CPU s", "controller ms/result", "hosts ms/result"],
                    runs, notes))
        for key, what in (("fresh", "fresh converge"), ("noop", "no-op rerun")):
            run = converge.get(key)
            if run and run.get("top_tasks"):
                out.append((f"Slowest tasks, {what} (profile_tasks, seconds of wall time per task)", ["task", "s"],
                            [[t["task"], fmt(t["s"])] for t in run["top_tasks"][:8]], []))

    load = phases.get("load", {})
    rows = []
    for key, what in LOAD_RUNS:
        run = load.get(key)
        if run:
            lat = run["latency_ms"]
            rows.append([what, run["users"], fmt(run["target_rate_rps"]), fmt(run["achieved_rate_rps"]), run["completed"],
                         fmt(lat["p50"]), fmt(lat["p95"]), fmt(lat["p99"]), fmt(lat["max"]), run["non_2xx"], run["errors"]])
    if rows:
        setup = load.get("setup", {})
        notes = [f"Client: {setup.get('client')} (a lab container), {setup.get('users')} users with one keep-alive connection "
                 f"each, one request per {fmt(setup.get('interval_s'))} s each, {fmt(setup.get('duration_s'))} s of arrivals; "
                 f"through the load balancer from {setup.get('client_addresses')} client addresses (its per-address limits on). "
                 "Latency from each request's scheduled time (open model, coordinated omission corrected)."]
        for what in ("health", "api"):
            cost = load.get(f"proxy_cost_{what}")
            if cost:
                notes.append(f"Proxy cost, {what}: load balancer / direct latency p50 x{fmt(cost['p50'])}, "
                             f"p95 x{fmt(cost['p95'])}, p99 x{fmt(cost['p99'])}")
        shipping = load.get("log_shipping")
        if shipping:
            notes.append(f"Log shipping during the API run: {shipping['found']} of {shipping['lines']} lines written on "
                         f"{', '.join(shipping['senders'])} (one every {fmt(shipping['every_s'])} s) found on the log host "
                         f"by teamflow-logs, p50 {fmt(shipping['p50_s'])} s, p95 {fmt(shipping['p95_s'])} s, "
                         f"max {fmt(shipping['max_s'])} s after the line was written")
        target = load.get("target")
        if target:
            notes.append(f"Plan target ({target['what']}): p95 {fmt(target['p95_ms'])} ms, {target['errors']} errors "
                         f"with {target['users']} users: met = {fmt(target['met'])}")
        out.append(("Load (open model; latency in ms)",
                    ["endpoint", "users", "rate rps", "achieved rps", "completed", "p50", "p95", "p99", "max",
                     "non-2xx", "errors"], rows, notes))

    out += capacity_sections(results)

    deploy = phases.get("deploy", {})
    rows = []
    for key, run in deploy.items():
        if isinstance(run, dict) and "load" in run:
            lat = run["load"]["latency_ms"]
            rows.append([run.get("playbook", "deploy.yml"), run["version"], fmt(run["deploy_wall_s"]),
                         fmt(run["load"]["target_rate_rps"]),
                         run["load"]["sent"], run["status_5xx"], run["failed_requests"], run["load"]["non_2xx"],
                         fmt(lat["p95"]), fmt(lat["p99"]), fmt(lat["max"])])
    if rows:
        users = sorted({run["load"]["users"] for run in deploy.values() if isinstance(run, dict) and "load" in run})
        hosts = sorted({run["app_hosts"] for run in deploy.values() if isinstance(run, dict) and "app_hosts" in run})
        out.append((f"Rolling deploy and rollback of {'/'.join(map(str, hosts)) or 'the'} app hosts under load "
                    f"(load: API and /health via the load balancer, {'/'.join(map(str, users))} users)",
                    ["playbook", "to version", "wall s", "rate rps", "requests", "5xx", "failed", "non-2xx", "p95 ms", "p99 ms",
                     "max ms"], rows, []))

    failover = phases.get("failover", {})
    rows = []
    for key, what in (("switchover", "switchover.yml (Patroni picks)"), ("kill9", "kill -9 of the leader's postmaster"),
                      ("host_stopped", "the leader's host killed, then started")):
        f = failover.get(key)
        if f:
            rows.append([what, f"{f['leader_before']} -> {f['leader_after']}", f["requests"], f["failed"],
                         f"{f['failed_writes']}/{f['writes']}", f"{f['failed_reads']}/{f['reads']}",
                         fmt(f["seconds_to_first_write"]), fmt(f["longest_write_gap_s"]), f["lost_writes"],
                         fmt(f["rejoin_s"])])
    if rows:
        setup, target = failover.get("setup", {}), failover.get("target", {})
        notes = [f"Client: {setup.get('client')}, open model at {setup.get('rate_rps')} requests/s through the load "
                 "balancer: /health, a list of notes (the app's read pool) and a new note (a write) in turn. The app "
                 "waits up to 30 s for a leader and retries a transaction that failed before its COMMIT. First write = "
                 "seconds from the fault to the first write sent after it that succeeded; gap = longest time between "
                 "two successful writes; lost = acknowledged writes missing on the leader afterwards; old leader "
                 "streams = seconds until the member that led streams as a replica (after its start for a host "
                 "killed, after the load otherwise)."]
        if target:
            notes.append(f"Target ({target['what']}): met = {fmt(target['met'])}")
        out.append(("Failover of the database tier under load (Patroni)",
                    ["fault", "leader", "requests", "failed", "failed writes", "failed reads", "first write s",
                     "write gap s", "lost writes", "old leader streams s"], rows, notes))

    faults = phases.get("faults", {})
    rows = []
    for key, what in (("vip_nginx_stopped", "the address holder's nginx stopped"),
                      ("vip_host_stopped", "the address holder's host stopped")):
        f = faults.get(key)
        if f:
            rows.append([what, f"{f['holder']} → {f['new_holder']}", f["requests"], f["failed"], f["non_2xx"],
                         fmt(f["p99_ms"]), fmt(f["address_moved_s"]), fmt(f["old_holder_backup_again_s"]),
                         fmt(f["address_stayed"])])
    if rows:
        out.append(("Failover of the web tier's shared address under load (keepalived)",
                    ["fault", "address", "requests", "failed", "non-2xx", "p99 ms", "moved s", "old holder backup s",
                     "stayed"], rows,
                    [f"Client: {faults.get('setup', {}).get('client')}, open model at "
                     f"{faults.get('setup', {}).get('rate_rps')} requests/s through the site's name (the shared address):"
                     " the front page, /health and a list of notes in turn. moved = seconds from the fault until the "
                     "other web host held the address; old holder backup = seconds from its return (nginx or the host "
                     "started again) until it was a backup; stayed = the address did not move back. The target: fewer "
                     "failed or non-2xx requests than one second's worth."]))

    rows = []
    for key, what in (("redis_master_stopped", "the Redis master stopped"),
                      ("redis_stopped", "Redis stopped 30 s on every cache host"), ("gunicorn_kill9", "kill -9 of one Gunicorn master"),
                      ("app_host_stopped", "an app host stopped 30 s"),
                      ("database_unreachable", "the database unreachable 25 s")):
        f = faults.get(key)
        if f:
            gets = [u for url, u in f["by_url"].items() if not url.startswith("POST")]
            api = [u for url, u in f["by_url"].items() if "/api/" in url]
            rows.append([what, f["requests"], f["failed"], f["non_2xx"], sum(u["failed"] for u in gets),
                         fmt(f["p99_ms"]), fmt(max((u["latency_max_ms"] for u in api), default=None)),
                         fmt(f["whole_again_s"])])
    if rows:
        setup, target = faults.get("setup", {}), faults.get("target", {})
        notes = [f"Client: {setup.get('client')}, open model at {setup.get('rate_rps')} requests/s through the load "
                 "balancer: /health, a note by id (through the Redis cache), a list of notes and a new note in turn. "
                 "failed = no answer; failed GETs = GETs with no answer or not 2xx; whole again = seconds from the "
                 "end of the fault (or the kill) until every app host's /health is ok."]
        if faults.get("redis_master_stopped"):
            notes.append("The Redis master stopped: the sentinels named the replica as the new master "
                         f"{fmt(faults['redis_master_stopped'].get('new_master_s'))} s after the stop; whole again = "
                         "the old master replicates from it and every app host is ok.")
        if target:
            notes.append(f"Target ({target['what']}): met = {fmt(target['met'])}")
        out.append(("Faults of the app and cache tiers under load", ["fault", "requests", "failed", "non-2xx",
                    "failed GETs", "p99 ms", "slowest API ms", "whole again s"], rows, notes))

    backup = phases.get("backup", {})
    if backup.get("compression"):
        pgbench = backup.get("pgbench", {})
        rows = []
        for ctype, f in backup["compression"].items():
            rows.append([ctype, fmt(f["full_s"]), fmt(f["full_mb_per_s"]), fmt(mib(f["full"]["repo_bytes"])),
                         fmt(f["full_ratio"]), fmt(f["full_time_vs_gz"]), fmt(f["full_size_vs_gz"]), fmt(f["incr_s"]),
                         fmt(mib(f["incr"]["repo_bytes"]))])
        notes = [f"Database: pgbench scale {pgbench.get('scale')}, {fmt(mib(pgbench.get('db_bytes')))} MiB "
                 f"(generated in {fmt(pgbench.get('init_s'))} s; WAL archive caught up {fmt(pgbench.get('archive_catch_up_s'))} s later). "
                 + backup_setup_note(backup.get("setup"))]
        verify = backup.get("verify")
        if verify:
            notes.append(f"Verification restore of {verify['label']} (teamflow.platform.pgbackrest_verify): restore "
                         f"{fmt(verify['restore_s'])} s + start and recovery {fmt(verify['start_s'])} s = "
                         f"{fmt(verify['duration_s'])} s (recovery time); pgbench_accounts rows {verify['query']}")
        rpo = backup.get("recovery_point")
        if rpo:
            notes.append(f"Recovery point: a commit every 0.2 s for {fmt(rpo['writes_s'])} s, primary killed (SIGKILL) "
                         f"{fmt(rpo['killed_after_last_commit_s'])} s after the last acknowledged commit, restored from repo1: "
                         f"{fmt(rpo['lost_s'])} s of committed work lost ({rpo['commits_lost']} of "
                         f"{rpo['commits_acknowledged']} commits; archive_timeout {rpo['archive_timeout_s']} s); "
                         f"target < {rpo['target_s']} s met = {fmt(rpo['met'])}; restore took {fmt(rpo['restore_duration_s'])} s")
        out.append(("Backup (pgBackRest, per compression type; times in s, sizes in MiB)",
                    ["compression", "full s", "full MiB/s", "full repo MiB", "repo/db", "time vs gz", "size vs gz",
                     "incr s", "incr repo MiB"], rows, notes))

    timing = [[name, fmt(p.get("phase_s"))] for name, p in phases.items()]
    timing.append(["total", fmt(results.get("total_s"))])
    out.append(("Phases (seconds)", ["phase", "s"], timing,
                [f"{name} FAILED: {msg}" for name, msg in results.get("errors", {}).items()]))
    return out


def header(results):
    m = results.get("machine", {})
    return (f"Benchmarks of {results.get('date')} on {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, "
            f"{m.get('os')} (kernel {m.get('kernel')}), commit {m.get('commit')}")


def text_table(results):
    lines = [header(results), ""]
    for title, head, rows, notes in sections(results):
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
        lines.append(title)
        lines.append("  ".join(str(h).ljust(w) for h, w in zip(head, widths)))
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
        lines += [f"  {n}" for n in notes]
        lines.append("")
    return "\n".join(lines)


table = text_table


def markdown(results, titles=None):
    """Every part of the run as Markdown; with TITLES, only the parts whose title starts with one of them."""
    lines = [f"_{header(results)}; `make bench`, figures from `benchmarks/results/latest.json`._", ""]
    for title, head, rows, notes in sections(results):
        if titles and not title.startswith(titles):
            continue
        lines.append(f"**{title}**")
        lines.append("")
        lines.append("| " + " | ".join(map(str, head)) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
        if notes:
            lines.append("")
            lines += [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=str(DEFAULT))
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--readme", action="append", default=[],
                        help="rewrite this file's figures between the bench markers (repeatable)")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.file).read_text())
    for readme in args.readme:
        path = Path(readme)
        text = path.read_text()
        found = False
        for begin, end, body in ((BEGIN, END, markdown(results)),
                                 (SUMMARY_BEGIN, SUMMARY_END, markdown(results, SUMMARY_TITLES))):
            if begin in text and end in text:
                before, rest = text.split(begin, 1)
                text = before + begin + "\n" + body + end + rest.split(end, 1)[1]
                found = True
        if not found:
            print(f"{path} has neither {BEGIN} ... {END} nor {SUMMARY_BEGIN} ... {SUMMARY_END}", file=sys.stderr)
            return 2
        path.write_text(text)
    if args.readme:
        return 0
    print(markdown(results) if args.markdown else text_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
