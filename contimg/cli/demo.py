"""``contimg demo``: a small simulated night through an embedded cluster, with a summary."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "run a small simulated night through a private single-machine cluster and summarise it"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=Path("contimg-data/demo"),
                        help="data root of the demo (default ./contimg-data/demo; cleared at start)")
    parser.add_argument("--groups", type=int, default=4, help="groups to simulate (default 4; the calibrator transits in the first)")
    parser.add_argument("--antennas", type=int, default=16, help="core antennas (default 16)")
    parser.add_argument("--channels-per-subband", type=int, default=4, help="channels per subband (default 4)")
    parser.add_argument("--calibrator-flux", type=float, default=10.0,
                        help="1.4 GHz flux (Jy) of the calibrator transiting in the first group (default 10)")
    parser.add_argument("--wait-for-solution", type=float, default=300.0,
                        help="seconds a science group waits for the calibrator's solution (default 300)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep the data of an earlier demo run")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")


def run(args: argparse.Namespace, settings) -> int:
    import sys

    from contimg.cluster.demo import DemoOptions, run_demo
    from contimg.cluster.status import format_products, format_status

    def say(msg: str) -> None:
        print(f"demo: {msg}", flush=True)

    status = run_demo(settings, DemoOptions(
        data_root=args.data_root, groups=args.groups, antennas=args.antennas,
        channels_per_subband=args.channels_per_subband, calibrator_flux_jy=args.calibrator_flux, seed=args.seed,
        concurrency=args.concurrency, timeout_s=args.timeout, wait_for_solution_s=args.wait_for_solution,
        keep=args.keep), say=say)
    print()
    print(format_status(status))
    print()
    print(format_products(status["products"]))
    _print_disk_usage(settings.model_copy(update={"data_root": args.data_root.absolute()}), status)
    counts = status["counts"]
    ok = (not status.get("timed_out") and counts["failed"] == 0
          and counts["completed"] >= status["expected_groups"])
    print(f"\ndemo {'succeeded' if ok else 'FAILED'}: {counts['completed']} completed, {counts['failed']} failed "
          f"of {status['expected_groups']} group(s) in {status['elapsed_s']:.0f} s")
    if not ok:
        print("see the logs of the worker and producer under the data root's state/logs", file=sys.stderr)
    return 0 if ok else 1


def _print_disk_usage(settings, status: dict) -> None:
    """What the night cost on disk, by kind (the demo's data root; nothing when it was removed)."""
    from contimg.pipeline.retention import disk_usage

    usage = {k: v for k, v in disk_usage(settings).items() if v}
    if not usage:
        return
    groups = max(1, status["counts"].get("completed", 0))
    total = sum(usage.values())
    print(f"\ndisk: {total / 1e9:.2f} GB for {groups} completed group(s), {total / groups / 1e9:.2f} GB per group "
          f"(a night of 280 groups: {total / groups * 280 / 1e12:.2f} TB)")
    for kind, n in sorted(usage.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<18} {n / 1e6:10.1f} MB")
