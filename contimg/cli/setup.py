"""``contimg setup``: make CASA work offline and check every external dependency.

What it does, in order:

1. installs the offline CASA *site* config (:func:`contimg.casa_env.install_site_config`)
   and warns about other site configs that casaconfig would read instead;
2. checks the user's ``~/.casa/config.py`` without ever changing it: casaconfig
   reads the site config first and the user config after it, so a user config
   that sets ``measures_auto_update = True`` or ``measurespath`` wins;
3. checks the three copies of measures data (casatools: ``casadata``;
   python-casacore: its bundled data; WSClean: Debian ``casacore-data``) and
   how far their Earth-orientation and leap-second tables reach;
4. imports casatools in a child process, exactly as a worker does (through
   :mod:`contimg.casa_env`), with the network disabled, and converts a time
   (UTC to TAI) and a direction (J2000 to AZEL at OVRO), which needs the
   measures tables;
5. finds ``wsclean`` and ``redis-server``.

It prints one status line per check and exits 1 when a check failed (WARN
never fails: it names something an operator should know, such as measures
tables that end before today).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from contimg.config import Settings

NAME = "setup"
HELP = "install the offline CASA site config; check measures data, CASA, WSClean and Redis"

Status = Literal["ok", "WARN", "FAIL"]

#: Site configs casaconfig prefers to the one on the Python path when
#: ``CASASITECONFIG`` is not set (casaconfig/config.py, ``_standard_config_path``).
STANDARD_SITE_CONFIGS = (Path("/opt/casa/casasiteconfig.py"), Path("/home/casa/casasiteconfig.py"))

#: Where Debian's casacore (and so WSClean) reads measures data.
DEBIAN_MEASURES_DIR = Path("/var/lib/casacore/data")

#: TAI - UTC since 2017-01-01 (no leap second announced since).
TAI_MINUS_UTC_S = 37.0

_MJD_EPOCH = date(1858, 11, 17)

# Run in a child process: the real import path of a worker, with the network off.
_PROBE = r"""
import json, os, socket, sys, time
attempts = []
_connect = socket.socket.connect
_getaddrinfo = socket.getaddrinfo
_LOCAL = {"127.0.0.1", "::1", "localhost"}
def _guard_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in _LOCAL:
        attempts.append(str(host))
        raise OSError("network disabled by contimg setup")
    return _connect(self, address)
def _guard_getaddrinfo(host, *args, **kwargs):
    if host not in _LOCAL and host is not None:
        attempts.append(str(host))
        raise socket.gaierror("network disabled by contimg setup")
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect = _guard_connect
socket.getaddrinfo = _guard_getaddrinfo

t0 = time.monotonic()
from contimg import casa_env
tools = casa_env.casatools()
import_s = time.monotonic() - t0
from casaconfig import config
me = tools.measures()
now = me.epoch("utc", "today")
tai = me.measure(now, "tai")
me.doframe(now)
me.doframe(me.observatory("OVRO_MMA"))
azel = me.measure(me.direction("J2000", "12h00m00s", "+35d00m00s"), "AZEL")
me.done()
print(json.dumps({
    "version": tools.version_string(),
    "import_s": import_s,
    "rundata": tools.ctsys.rundata(),
    "measurespath": config.measurespath,
    "measures_auto_update": bool(config.measures_auto_update),
    "data_auto_update": bool(config.data_auto_update),
    "loaded": list(config.load_success()),
    "tai_minus_utc_s": (tai["m0"]["value"] - now["m0"]["value"]) * 86400.0,
    "azel_ok": azel.get("refer") == "AZEL",
    "network_attempts": attempts,
}))
"""


@dataclass(frozen=True)
class Check:
    """The outcome of one set-up check."""

    name: str
    status: Status
    detail: str


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--site-config",
        type=Path,
        default=None,
        help="where to install casasiteconfig.py (default: this environment's site-packages)",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON instead of a table")
    parser.add_argument(
        "--measures-tarball",
        type=Path,
        default=None,
        metavar="FILE",
        help="first install the measures tables of this WSRT_Measures tarball (or unpacked directory) "
        "into the casatools and python-casacore copies (see docs/measures.md)",
    )
    parser.add_argument(
        "--include-wsclean",
        action="store_true",
        help=f"with --measures-tarball, also update WSClean's copy in {DEBIAN_MEASURES_DIR} (needs root)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds allowed for the casatools import and measures check (default 300)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    updates: list[Check] = []
    if args.measures_tarball is not None:
        targets = [p for p in (_casadata_dir(), _python_casacore_data_dir(dict(os.environ))) if p is not None]
        if args.include_wsclean:
            targets.append(DEBIAN_MEASURES_DIR)
        updates = update_measures(args.measures_tarball, targets)
    elif args.include_wsclean:
        print("contimg setup: --include-wsclean needs --measures-tarball", file=sys.stderr)
        return 2
    checks = updates + run_checks(
        site_config=args.site_config,
        home=Path.home(),
        broker_configured=settings.broker_configured,
        timeout_s=args.timeout,
    )
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=1))
    else:
        print(format_table(checks))
    failed = [c.name for c in checks if c.status == "FAIL"]
    if failed:
        print(f"contimg setup: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def run_checks(
    *,
    site_config: Path | None = None,
    home: Path | None = None,
    broker_configured: bool = False,
    timeout_s: float = 300.0,
) -> list[Check]:
    """Install the site config and run every check, in order.

    Parameters
    ----------
    site_config
        Where to write ``casasiteconfig.py``; default: the environment's
        site-packages, where casaconfig finds it on the Python path.
    home
        The home directory whose ``.casa/config.py`` is checked (never written).
    broker_configured
        True if ``CONTIMG_BROKER_URL`` names a broker, in which case a local
        ``redis-server`` is not needed.
    timeout_s
        Limit for the child process that imports casatools.

    Returns
    -------
    list of Check
        One per check (``name``, ``status`` ``"ok"``/``"WARN"``/``"FAIL"``, ``detail``), in the order run: site
        config (and any other site configs), user config, casatools measures and offline probe, python-casacore
        measures, ``wsclean`` and its Debian measures, ``redis-server``.
    """
    home = home or Path.home()
    env_before = dict(os.environ)
    checks: list[Check] = []

    site_check, site_path = _install_site_config(site_config)
    checks.append(site_check)
    checks.extend(_other_site_configs(site_path))
    checks.append(_user_config(home))

    casadata = _casadata_dir()
    checks.append(_measures_dir("casatools measures", casadata, required=True))
    if site_path is not None and casadata is not None:
        checks.extend(_probe_casatools(site_path, home=home, env=env_before, timeout_s=timeout_s))
    else:
        checks.append(Check("casatools offline", "FAIL", "not tried: no site config or no casadata package"))
    if "AIPSPATH" in env_before and "CASACORE_DATADIR" not in env_before:
        checks.append(Check(
            "python-casacore measures", "WARN",
            f"AIPSPATH={env_before['AIPSPATH']} is set: python-casacore reads measures.directory from "
            "the .aipsrc there instead of its bundled data; not checked",
        ))
    else:
        checks.append(_measures_dir("python-casacore measures", _python_casacore_data_dir(env_before),
                                    required=False))

    checks.append(_program("wsclean", ["-version"], required=True, why_optional=""))
    checks.append(_measures_dir("WSClean measures (Debian)", DEBIAN_MEASURES_DIR, required=True,
                                hint="apt-get install casacore-data"))
    checks.append(_program(
        "redis-server", ["--version"], required=not broker_configured,
        why_optional="CONTIMG_BROKER_URL names a broker; a local redis-server is only used by 'contimg demo'",
    ))
    return checks


def format_table(checks: list[Check]) -> str:
    """Checks as an aligned text table: check, status, detail."""
    width = max(len("check"), *(len(c.name) for c in checks))
    lines = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.status:<6}  {c.detail}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- checks
def _install_site_config(path: Path | None) -> tuple[Check, Path | None]:
    from contimg import casa_env

    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        written = casa_env.install_site_config(path)
    except (RuntimeError, OSError) as exc:
        return Check("CASA site config", "FAIL", str(exc)), None
    text = written.read_text()
    values = _exec_config(text)
    if values.get("measures_auto_update") or values.get("data_auto_update"):
        return Check("CASA site config", "FAIL", f"{written} leaves auto-updates on"), written
    return Check("CASA site config", "ok", f"{written} (measures_auto_update = data_auto_update = False)"), written


def _other_site_configs(ours: Path | None) -> list[Check]:
    checks = []
    preset = os.environ.get("CASASITECONFIG")
    if preset and ours is not None and Path(preset) != ours:
        checks.append(Check(
            "CASASITECONFIG", "WARN",
            f"set to {preset}: contimg processes will read it instead of {ours}",
        ))
    for path in STANDARD_SITE_CONFIGS:
        if path.is_file():
            checks.append(Check(
                "CASA site config (other)", "WARN",
                f"{path} exists: casaconfig prefers it when CASASITECONFIG is unset "
                "(contimg sets CASASITECONFIG, other programs do not)",
            ))
    return checks


def _user_config(home: Path) -> Check:
    from contimg import casa_env

    cfg = home / ".casa" / "config.py"
    if not cfg.exists():
        return Check("CASA user config", "ok", f"{cfg}: none")
    problems = casa_env.user_config_warnings(home)
    if problems:
        return Check(
            "CASA user config", "WARN",
            "; ".join(problems) + " (it overrides the site config; left unchanged: edit it yourself)",
        )
    return Check("CASA user config", "ok", f"{cfg}: present, no offline conflicts (left unchanged)")


def _casadata_dir() -> Path | None:
    from contimg import casa_env

    try:
        return casa_env.casadata_dir()
    except ImportError:
        return None


def _python_casacore_data_dir(env: dict[str, str]) -> Path | None:
    """The directory python-casacore reads, as its ``__init__`` decides."""
    if "AIPSPATH" in env:
        datadir = env.get("CASACORE_DATADIR")
        return Path(datadir) if datadir else None
    try:
        import casacore
    except ImportError:
        return None
    return Path(casacore.__file__).parent / "data"


def _measures_dir(label: str, path: Path | None, *, required: bool, hint: str = "") -> Check:
    bad: Status = "FAIL" if required else "WARN"
    if path is None or not path.is_dir():
        return Check(label, bad, f"measures data directory {path} not found" + (f" ({hint})" if hint else ""))
    tai = _table_info(path / "geodetic" / "TAI_UTC")
    if tai is None:
        return Check(label, bad, f"{path}: no readable geodetic/TAI_UTC table" + (f" ({hint})" if hint else ""))
    parts = [f"{path}", f"leap seconds dated {tai[0]}"]
    status: Status = "ok"
    eop = _table_info(path / "geodetic" / "IERSeop2000")
    predict = _table_info(path / "geodetic" / "IERSpredict")
    today = datetime.now(timezone.utc).date()
    if eop is None:
        parts.append("no IERS EOP tables (UT1-UTC taken as 0)")
    else:
        last = predict[1] if predict is not None else eop[1]
        parts.append(f"EOP measured to {eop[1]}, predicted to {last}")
        if last < today:
            status = "WARN"
            parts.append("EOP ends before today: update (docs/measures.md)")
    return Check(label, status, ", ".join(parts))


def _table_info(path: Path) -> tuple[str, date] | None:
    """``(VS_DATE, date of the last row)`` of a casacore measures table, or None."""
    if not (path / "table.dat").is_file():
        return None
    try:
        from casacore import tables
    except ImportError:
        return None
    try:
        with tables.table(str(path), ack=False, readonly=True) as tab:
            vs_date = str(tab.getkeywords().get("VS_DATE", "?")).split("/")
            mjd = float(tab.getcell("MJD", tab.nrows() - 1)) if tab.nrows() else 0.0
    except RuntimeError:
        return None
    return "-".join(vs_date[:3]), _MJD_EPOCH + timedelta(days=int(mjd))


def _probe_casatools(site_config: Path, *, home: Path, env: dict[str, str], timeout_s: float) -> list[Check]:
    name = "casatools offline"
    child_env = dict(env)
    child_env["CASASITECONFIG"] = str(site_config)
    child_env["HOME"] = str(home)
    with tempfile.TemporaryDirectory(prefix="contimg-setup-") as tmp:
        log_dir = Path(tmp) / "logs"
        workdir = Path(tmp) / "cwd"
        workdir.mkdir()
        child_env["CONTIMG_CASA_LOG_DIR"] = str(log_dir)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _PROBE],
                cwd=workdir, env=child_env, capture_output=True, text=True,
                timeout=timeout_s, check=False,
            )
        except subprocess.TimeoutExpired:
            return [Check(name, "FAIL", f"importing casatools took longer than {timeout_s:.0f} s")]
        elapsed = time.monotonic() - t0
        litter = sorted(p.name for p in workdir.iterdir())
        # casatools sends some messages to its log file and some to stderr.
        log_text = "".join(p.read_text(errors="replace") for p in sorted(log_dir.glob("*.log")))
        severe = _severe_messages(log_text + "\n" + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [Check(name, "FAIL", f"casatools import or measures conversion failed: {tail}")]
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return [Check(name, "FAIL", f"unexpected probe output: {proc.stdout[-200:]!r}")]

    checks = []
    tai_utc = result["tai_minus_utc_s"]
    if str(site_config) not in result["loaded"]:
        checks.append(Check(
            name, "FAIL",
            f"casaconfig did not load {site_config} (loaded: {', '.join(result['loaded'])})",
        ))
    elif abs(tai_utc - TAI_MINUS_UTC_S) > 0.01 or not result["azel_ok"]:
        checks.append(Check(name, "FAIL", f"measures conversion wrong: TAI-UTC = {tai_utc:.3f} s, expected 37 s"))
    else:
        checks.append(Check(
            name, "ok",
            f"casatools {result['version']} imported in {result['import_s']:.1f} s "
            f"({elapsed:.1f} s with the check); TAI-UTC = {tai_utc:.0f} s, J2000->AZEL ok; "
            f"data {result['rundata']}",
        ))
    problems = []
    if result["measures_auto_update"] or result["data_auto_update"]:
        problems.append("effective config turns auto-updates on (a user config overrides the site config)")
    if result["network_attempts"]:
        problems.append(f"tried the network: {', '.join(sorted(set(result['network_attempts'])))}")
    if litter:
        problems.append(f"wrote {', '.join(litter)} into the working directory")
    if problems:
        checks.append(Check("casatools network", "WARN", "; ".join(problems)))
    else:
        checks.append(Check("casatools network", "ok", "no network access, auto-updates off, no log files in cwd"))
    if severe:
        checks.append(Check("casatools log", "WARN", "SEVERE: " + " | ".join(severe)))
    return checks


def _severe_messages(text: str) -> list[str]:
    """The distinct first lines of the SEVERE messages in CASA log text."""
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 4 and fields[1] == "SEVERE" and not fields[2].endswith("+"):
            message = fields[-1].strip()
            if message and message not in found:
                found.append(message)
    return found


def _program(name: str, version_args: list[str], *, required: bool, why_optional: str) -> Check:
    path = shutil.which(name)
    if path is None:
        if required:
            return Check(name, "FAIL", f"{name} not found on PATH (Debian: apt-get install {name})")
        return Check(name, "ok", f"not found; not needed: {why_optional}")
    try:
        proc = subprocess.run([path, *version_args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, "FAIL", f"{path} does not run: {exc}")
    text = (proc.stdout + proc.stderr).strip().splitlines()
    version = next((line.strip() for line in text if "version" in line.lower() or " v=" in line), "")
    return Check(name, "ok", f"{path} {' '.join(version.split()[:4])}".strip())


def _exec_config(text: str) -> dict[str, object]:
    """Evaluate a casaconfig file the way casaconfig does (exec over the defaults)."""
    namespace: dict[str, object] = {"measures_auto_update": True, "data_auto_update": True}
    exec(compile(text, "casasiteconfig.py", "exec"), namespace)  # noqa: S102 - our own file
    return namespace


# ---------------------------------------------------------------------- measures update
#: Tables a measures update leaves alone: CASA maintains its own Observatories
#: table (casaconfig's measures_update skips it too) and ``*.old`` are backups.
_KEEP_TABLES = ("Observatories",)


def update_measures(source: Path, targets: Sequence[Path]) -> list[Check]:
    """Install the measures tables of a ``WSRT_Measures`` tarball into measures directories.

    This is what casaconfig's ``measures_update`` does after downloading, done
    from a file copied onto the machine: the ``geodetic/`` and ``ephemerides/``
    tables replace those of each target, one table directory at a time (each
    swapped in by a rename), except ``Observatories`` and ``*.old`` backups.
    Processes that already read the tables keep the old ones until restarted.

    Parameters
    ----------
    source
        ``WSRT_Measures.ztar`` (any tar compression) or an unpacked directory
        holding ``geodetic/`` and ``ephemerides/``.
    targets
        Measures directories to update (each holds ``geodetic/``).

    Returns
    -------
    list of Check
        One per target; ``FAIL`` when the source is not usable or a target
        cannot be written.
    """
    name = "measures update"
    with tempfile.TemporaryDirectory(prefix="contimg-measures-") as tmp:
        try:
            root = _unpack_measures(source, Path(tmp))
        except (OSError, tarfile.TarError, ValueError) as exc:
            return [Check(name, "FAIL", f"{source}: {exc}")]
        tai = _table_info(root / "geodetic" / "TAI_UTC")
        eop = _table_info(root / "geodetic" / "IERSeop2000")
        if tai is None or eop is None:
            return [Check(name, "FAIL", f"{source}: no readable geodetic/TAI_UTC and geodetic/IERSeop2000 tables")]
        checks = []
        for target in targets:
            try:
                count = _install_tables(root, target)
            except OSError as exc:
                checks.append(Check(name, "FAIL", f"{target}: {exc}"))
                continue
            checks.append(Check(
                name, "ok",
                f"{count} tables from {source.name} into {target} (leap seconds dated {tai[0]}, EOP to {eop[1]})",
            ))
        return checks


def _unpack_measures(source: Path, tmp: Path) -> Path:
    """The directory holding ``geodetic/`` (unpacking a tarball into ``tmp``)."""
    if source.is_dir():
        base = source
    else:
        with tarfile.open(source) as tar:
            members = []
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                    raise ValueError(f"unsafe or unexpected tar member {member.name!r}")
                members.append(member)
            kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)  # noqa: S202 - members checked above
        base = tmp
    for candidate in (base, *sorted(p for p in base.iterdir() if p.is_dir())):
        if (candidate / "geodetic").is_dir():
            return candidate
    raise ValueError("no geodetic/ directory: not a measures tarball")


def _install_tables(root: Path, target: Path) -> int:
    """Swap each table of ``root`` into ``target``; return how many were installed."""
    if not (target / "geodetic").is_dir():
        raise OSError("not a measures directory (no geodetic/)")
    count = 0
    for sub in ("geodetic", "ephemerides"):
        if not (root / sub).is_dir():
            continue
        (target / sub).mkdir(exist_ok=True)
        for table in sorted((root / sub).iterdir()):
            if not table.is_dir() or table.name in _KEEP_TABLES or table.name.endswith(".old"):
                continue
            final = target / sub / table.name
            new = target / sub / f".{table.name}.contimg-new"
            old = target / sub / f".{table.name}.contimg-old"
            _remove(new)
            _remove(old)
            shutil.copytree(table, new)
            if final.exists() or final.is_symlink():
                final.rename(old)
            new.rename(final)
            _remove(old)
            count += 1
    return count


def _remove(path: Path) -> None:
    """Remove a file, a symbolic link (not its target) or a directory tree, if present."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
