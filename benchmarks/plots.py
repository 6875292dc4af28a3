#!/usr/bin/env python3
"""PNG pictures of a benchmark run (benchmarks/bench.py's JSON), next to its figures.

    benchmarks/plots.py [FILE] [--out DIR] [--name NAME]

writes NAME-load.png (latency percentiles per endpoint), NAME-converge.png (the
site.yml runs) and NAME-phases.png (where the bench's time went) into DIR
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
    """Wall time of each site.yml run of the bench; None without one."""
    phases = results.get("phases", {})
    runs = []
    for phase, key, what in (("converge", "fresh", "fresh lab"), ("converge", "noop", "no-op"),
                             ("converge", "noop_mitogen", "no-op, Mitogen"),
                             ("scale", "scale_out", "4 app hosts join"),
                             ("scale", "noop_6_app_mitogen", "no-op, 6 app hosts, Mitogen")):
        run = phases.get(phase, {}).get(key)
        if run:
            runs.append((what, run))
    if not runs:
        return None
    figure, axes = plt.subplots(figsize=(10, 4))
    bars = axes.barh([what for what, _ in runs], [run["wall_s"] for _, run in runs])
    axes.bar_label(bars, labels=[f"{run['wall_s']:.0f} s, {run['hosts']} hosts" for _, run in runs], padding=3)
    axes.invert_yaxis()
    axes.set_xlim(0, max(run["wall_s"] for _, run in runs) * 1.25)
    axes.set_xlabel("ansible-playbook wall time, s")
    axes.set_title(f"site.yml runs ({results.get('date', '')})")
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


PLOTS = {"load": plot_load, "converge": plot_converge, "phases": plot_phases}


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
