#!/usr/bin/env python3
"""PNG pictures of a benchmark run (benchmarks/bench.py's JSON), next to its figures.

    benchmarks/plots.py [FILE] [--out DIR] [--name NAME]

writes NAME-load.png (latency percentiles per endpoint), NAME-capacity.png
(latency percentiles against the achieved rate, per endpoint), NAME-converge.png
(the site.yml runs, their wall time and CPU), NAME-faults.png (requests answered
and failed per second during each fault) and NAME-phases.png (where the bench's
time went) into DIR
(default: benchmarks/results/, NAME: latest). `make bench` writes them for each
run and for latest.json; docs/benchmarks.md shows the latest. Every value comes
from the JSON.
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)

import report  # noqa: E402

DEFAULT = Path(__file__).resolve().parent / "results" / "latest.json"
PERCENTILES = ("p50", "p95", "p99", "max")
# short names of report.LOAD_RUNS for the axis
LOAD_LABELS = {"lb_health": "/health\nload balancer", "lb_static": "static asset\nload balancer",
               "lb_api": "API (PostgreSQL, Redis)\nload balancer", "direct_health": "/health\none app host",
               "direct_api": "API (PostgreSQL, Redis)\none app host"}


def _save(figure, path):
    figure.tight_layout()
    # no date or version in the file: the same results give the same picture
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    return path


def _grid(count, columns, width, row_height):
    """A figure of COUNT panels, COLUMNS to a row (the unused ones of the last row hidden); the figure and the
    panels in order."""
    rows = -(-count // columns)
    figure, panels = plt.subplots(rows, columns, figsize=(width, row_height * rows), squeeze=False)
    flat = [axes for row in panels for axes in row]
    for axes in flat[count:]:
        axes.axis("off")
    return figure, flat[:count]


def plot_load(results, path):
    """Latency percentiles per endpoint of the load phase (log scale); None without a load phase."""
    load = results.get("phases", {}).get("load", {})
    runs = [(LOAD_LABELS[key], load[key]) for key, _ in report.LOAD_RUNS if key in load]
    if not runs:
        return None
    figure, axes = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(PERCENTILES)
    for index, percentile in enumerate(PERCENTILES):
        axes.bar([position + index * width for position in range(len(runs))],
                 [run["latency_ms"][percentile] for _, run in runs], width, label=percentile)
    axes.set_xticks([position + width * (len(PERCENTILES) - 1) / 2 for position in range(len(runs))])
    axes.set_xticklabels([what for what, _ in runs], fontsize=9)
    axes.set_yscale("log")
    axes.set_ylabel("latency, ms (log scale)")
    rates = sorted({run["target_rate_rps"] for _, run in runs})
    axes.set_title(f"Load: latency per endpoint at {'/'.join(report.fmt(rate) for rate in rates)} requests/s "
                   f"({results.get('date', '')})")
    axes.legend()
    return _save(figure, path)


def plot_converge(results, path):
    """Wall time of each site.yml run of the bench and, when the run recorded it, where its CPU went; None
    without a run."""
    phases = results.get("phases", {})
    scaled = report.scaled_app_hosts(phases.get("scale", {}))
    runs = []
    for phase, key, what in report.converge_runs(scaled):
        run = phases.get(phase, {}).get(key)
        if run:
            mitogen = ", Mitogen" if run["strategy"].startswith("mitogen") else ""
            runs.append((what.replace("site.yml, ", "") + mitogen, run))
    if not runs:
        return None
    cpu = [(what, run) for what, run in runs if run.get("controller_cpu_s") is not None]
    figure, panels = plt.subplots(1, 2 if cpu else 1, figsize=(14 if cpu else 10, 4), squeeze=False)
    axes = panels[0][0]
    bars = axes.barh([what for what, _ in runs], [run["wall_s"] for _, run in runs])
    axes.bar_label(bars, labels=[f"{run['wall_s']:.0f} s, {run['hosts']} hosts" for _, run in runs], padding=3)
    axes.invert_yaxis()
    axes.set_xlim(0, max(run["wall_s"] for _, run in runs) * 1.3)
    axes.set_xlabel("ansible-playbook wall time, s")
    axes.set_title(f"site.yml runs ({results.get('date', '')})")
    if cpu:
        axes = panels[0][1]
        names = [what for what, _ in cpu]
        left = [0.0] * len(cpu)
        for field, label in (("controller_cpu_s", "controller"), ("hosts_cpu_s", "hosts"), ("engine_cpu_s", "engine")):
            values = [run.get(field) or 0.0 for _, run in cpu]
            axes.barh(names, values, left=left, label=label)
            left = [a + b for a, b in zip(left, values)]
        axes.invert_yaxis()
        axes.set_xlabel("CPU seconds of the run")
        axes.set_title("where the CPU went")
        axes.legend()
    return _save(figure, path)


def plot_capacity(results, path):
    """Latency percentiles against the achieved rate, per endpoint of the capacity phase; None without one."""
    phases = results.get("phases", {})
    capacity, scale = phases.get("capacity", {}), phases.get("scale", {})
    runs = [(what, capacity[key]) for key, what in report.CAPACITY_RUNS if key in capacity]
    if scale.get("lb_api_read"):
        runs.append((f"API read via load balancer,\n{scale.get('app_hosts')} app hosts", scale["lb_api_read"]))
    if not runs:
        return None
    figure, panels = _grid(len(runs), 4, 16, 3.6)
    for axes, (what, run) in zip(panels, runs):
        rates = [step["achieved_rps"] for step in run["steps"]]
        for percentile in ("p50", "p95", "p99"):
            axes.plot(rates, [step["latency_ms"][percentile] for step in run["steps"]], marker="o", label=percentile)
        failed = [step["achieved_rps"] for step in run["steps"] if step["failed_share"] > report.FAILED_SHARE]
        if failed:
            axes.scatter(failed, [report.P99_MS] * len(failed), marker="x", color="red", zorder=3, label="failures")
        axes.axhline(report.P99_MS, color="grey", linestyle="--", linewidth=1)
        axes.set_yscale("log")
        axes.set_xlabel("achieved requests/s")
        axes.set_ylabel("latency, ms")
        axes.set_title(what, fontsize=10)
        axes.legend(fontsize=8)
    figure.suptitle(f"Capacity: latency against rate until p99 > {report.P99_MS} ms or failures "
                    f"({results.get('date', '')})")
    return _save(figure, path)


# the faults of the failover and faults phases, in the order of their tables
FAULTS = (("failover", "switchover", "switchover.yml"), ("failover", "kill9", "kill -9 of the leader's postmaster"),
          ("failover", "host_stopped", "the leader's host killed"),
          ("faults", "vip_nginx_stopped", "the address holder's nginx stopped"),
          ("faults", "vip_host_stopped", "the address holder's host stopped"),
          ("faults", "redis_master_stopped", "the Redis master stopped"),
          ("faults", "redis_stopped", "Redis stopped on every cache host"),
          ("faults", "gunicorn_kill9", "kill -9 of one Gunicorn master"),
          ("faults", "app_host_stopped", "an app host stopped"),
          ("faults", "database_unreachable", "the database unreachable"))


def plot_timelines(results, path):
    """Requests answered and failed per second during each fault of the failover and faults phases, with the
    fault (and its end) marked; None without a recorded timeline."""
    phases = results.get("phases", {})
    runs = [(what, phases[phase][key]) for phase, key, what in FAULTS
            if phases.get(phase, {}).get(key, {}).get("timeline")]
    if not runs:
        return None
    figure, panels = _grid(len(runs), 2, 14, 2.4)
    for axes, (what, run) in zip(panels, runs):
        seconds = [second for second, _, _ in run["timeline"]]
        answered = [ok for _, ok, _ in run["timeline"]]
        failed = [bad for _, _, bad in run["timeline"]]
        axes.bar(seconds, answered, width=1.0, color="tab:green", label="answered 2xx")
        axes.bar(seconds, failed, width=1.0, bottom=answered, color="tab:red", label="no answer or not 2xx")
        for at, label, style in ((run.get("fault_at_s"), "fault", "-"), (run.get("undo_at_s"), "undone", "--")):
            if at is not None:
                axes.axvline(at, color="black", linestyle=style, linewidth=1, label=label)
        axes.set_title(f"{what}: {sum(failed)} of {sum(answered) + sum(failed)} without a 2xx", fontsize=10)
        axes.set_xlabel("s into the run (requests by due time)")
        axes.set_ylabel("requests")
        axes.legend(fontsize=7, loc="lower left")
    figure.suptitle(f"Faults under load: requests per second ({results.get('date', '')})")
    return _save(figure, path)


def plot_phases(results, path):
    """Seconds per phase of the bench; None without phases."""
    phases = [(name, phase["phase_s"]) for name, phase in results.get("phases", {}).items() if "phase_s" in phase]
    if not phases:
        return None
    figure, axes = plt.subplots(figsize=(8, 3))
    bars = axes.barh([name for name, _ in phases], [seconds for _, seconds in phases])
    axes.bar_label(bars, labels=[f"{seconds:.0f} s" for _, seconds in phases], padding=3)
    axes.invert_yaxis()
    axes.set_xlim(0, max(seconds for _, seconds in phases) * 1.15)
    axes.set_xlabel("s")
    axes.set_title(f"make bench: {sum(s for _, s in phases) / 60:.1f} min ({results.get('date', '')})")
    return _save(figure, path)


PLOTS = {"load": plot_load, "capacity": plot_capacity, "converge": plot_converge, "faults": plot_timelines,
         "phases": plot_phases}


def write_all(results, out_dir, name):
    """Every picture the results allow, as OUT_DIR/NAME-<plot>.png; the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [plot(results, out_dir / f"{name}-{kind}.png") for kind, plot in PLOTS.items()]
    return [path for path in written if path]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default=str(DEFAULT))
    parser.add_argument("--out", default=str(DEFAULT.parent))
    parser.add_argument("--name", default="latest")
    args = parser.parse_args(argv)
    for path in write_all(json.loads(Path(args.file).read_text()), args.out, args.name):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
