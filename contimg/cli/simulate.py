"""``contimg simulate OUTDIR``: write simulated DSA-110 subband groups and their truth."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

NAME = "simulate"
HELP = "write simulated DSA-110 UVH5 subband groups (16 files each) and their truth"


def _utc(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from exc
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _ese(text: str) -> tuple[int, float, float, float]:
    try:
        sid, center, duration, depth = text.split(":")
        return int(sid), float(center), float(duration), float(depth)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected ID:CENTER_DAY:DURATION_DAYS:DEPTH, got {text!r}") from exc


def _subbands(text: str) -> tuple[int, ...]:
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a list such as 0-11,14, got {text!r}") from exc
    return tuple(out)


def register(parser: argparse.ArgumentParser) -> None:
    from contimg.simulation.config import DEFAULT_START

    parser.add_argument("outdir", help="output directory (created)")
    parser.add_argument("--start", type=_utc, default=DEFAULT_START,
                        help=f"UTC start of the first group, ISO format (default {DEFAULT_START.isoformat()})")
    parser.add_argument("--groups", type=int, default=1, help="consecutive groups per day (default 1)")
    parser.add_argument("--days", type=int, default=1,
                        help="days: each repeats the groups one sidereal day later, same LST (default 1)")
    parser.add_argument("--dec", type=float, default=35.0, help="pointing declination, apparent, degrees (default 35)")
    parser.add_argument("--antennas", type=int, default=96, help="antennas carrying data (default 96)")
    parser.add_argument("--channels-per-subband", type=int, default=48, help="channels per subband (default 48)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--calibrator-flux", type=float, default=None, metavar="JY",
                        help="add a calibrator of this 1.4 GHz flux transiting mid-group at the pointing dec")
    parser.add_argument("--no-noise", action="store_true", help="no thermal noise")
    parser.add_argument("--no-gains", action="store_true", help="all antenna gains 1")
    parser.add_argument("--sefd", type=float, default=6500.0, help="system equivalent flux density, Jy (default 6500)")
    parser.add_argument("--jitter-s", type=float, default=3.0,
                        help="file-name timestamps jitter by up to this many seconds (default 3)")
    parser.add_argument("--n-sources", type=int, default=100, help="random catalogue sources (default 100; NVSS has ~17 per deg^2 above 10 mJy, "
                        "~1500 in the default 5-degree field)")
    parser.add_argument("--field-radius", type=float, default=5.0,
                        help="sources lie within this many degrees of the pointing track (default 5)")
    parser.add_argument("--ese-fraction", type=float, default=0.0,
                        help="fraction of sources given a random extreme scattering event (default 0)")
    parser.add_argument("--ese", type=_ese, action="append", default=[], metavar="ID:CENTER:DURATION:DEPTH",
                        help="inject an ESE into source ID (days since the first epoch); repeatable")
    parser.add_argument("--red-noise", type=float, default=0.0,
                        help="rms of intrinsic log-flux variability of every source (default 0)")
    parser.add_argument("--flux-scale-error", type=float, default=0.0,
                        help="rms of a per-epoch flux-scale error on non-calibrator sources (default 0)")
    parser.add_argument("--subbands", type=_subbands, default=tuple(range(16)), metavar="LIST",
                        help="write only these subbands, e.g. 0-11,14 (default all 16: an incomplete group for tests)")
    parser.add_argument("--catalog", default=None, metavar="CSV",
                        help="simulate this sky (id,ra_deg,dec_deg,flux_jy,spectral_index,calibrator) "
                        "instead of a random one; --n-sources and --calibrator-flux are then ignored")
    parser.add_argument("--processes", type=int, default=1, help="parallel subband writers (default 1)")


def run(args: argparse.Namespace, settings: object) -> int:
    from contimg.simulation import EseInjection, SimulationConfig, SkyCatalog, simulate

    config = SimulationConfig(  # invalid options raise ConfigError: exit status 1 with the message
        start=args.start, n_groups=args.groups, n_days=args.days, dec_deg=args.dec,
        n_antennas=args.antennas, channels_per_subband=args.channels_per_subband, seed=args.seed,
        calibrator_flux_jy=args.calibrator_flux, noise=not args.no_noise, gains=not args.no_gains,
        sefd_jy=args.sefd, jitter_s=args.jitter_s, n_sources=args.n_sources, field_radius_deg=args.field_radius,
        ese_fraction=args.ese_fraction,
        events=tuple(EseInjection(source_id=s, t_center_days=c, duration_days=d, depth=p) for s, c, d, p in args.ese),
        red_noise_amplitude=args.red_noise, flux_scale_error=args.flux_scale_error, processes=args.processes,
        subbands=args.subbands,
    )
    catalog = SkyCatalog.read_csv(args.catalog) if args.catalog else None
    ngroups = config.n_groups * config.n_days
    total = ngroups * len(config.subbands)
    done = [0]

    def progress(msg: str) -> None:
        done[0] += 1
        if sys.stderr.isatty():
            print(f"\r[{done[0]}/{total}] {msg}", end="", file=sys.stderr, flush=True)

    result = simulate(args.outdir, config, catalog=catalog, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for g in result.groups:
        print(f"group {g.index} (day {g.epoch}) {g.start.isoformat()}: {len(g.paths)} files")
    print(f"truth: {result.truth_path}")
    return 0
