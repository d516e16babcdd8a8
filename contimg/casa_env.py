"""Make CASA (casatools/casatasks) work offline, quietly and fork-safely.

CASA must never try the network. casaconfig reads, in order, its built-in
defaults, a *site* config (``casasiteconfig.py`` on the Python path, or the file
named by ``CASASITECONFIG``) and the user's ``~/.casa/config.py``. We point a
site config at the measures data shipped by the ``casadata`` package with every
auto-update off, and never touch the user's file: if one exists we only check it
and warn when it would switch auto-updates on.

Three copies of measures data are in play and each reader uses its own:

* casatools/casatasks: the ``casadata`` package (``measurespath`` below);
* the python-casacore wheel: its bundled data, or ``~/.casarc`` / ``CASACORE_DATA``;
* WSClean (Debian): ``/usr/share/casacore/data`` from ``casacore-data*``.

To update measures data offline, install newer ``casadata`` and
``casacore-data`` packages from a local mirror (``pip install casadata==...``,
``apt-get install casacore-data``); the leap-second table in casadata 2025.9
ends in 2025, so CASA logs a SEVERE "TAI_UTC seems out-of-date" that is
harmless for DSA-110 time ranges already covered.

Import casatools only through :func:`casatools` / :func:`casatasks` here, and only
inside a task or a worker child, never in a parent process that forks afterwards:
casatools starts gRPC threads on import.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SITE_CONFIG_NAME = "casasiteconfig.py"
_MARKER = "# written by contimg: offline measures data, no auto-updates"


def casadata_dir() -> Path:
    """The measures/data directory shipped by the ``casadata`` package."""
    import casadata

    return Path(casadata.__file__).parent / "__data__"


def site_config_text() -> str:
    """The content of the site config that keeps CASA offline."""
    return (
        f"{_MARKER}\n"
        f"measurespath = {str(casadata_dir())!r}\n"
        "measures_auto_update = False\n"
        "data_auto_update = False\n"
        "import os as _os\n"
        "_log_dir = _os.environ.get('CONTIMG_CASA_LOG_DIR')\n"
        "if _log_dir:\n"
        "    _os.makedirs(_log_dir, exist_ok=True)\n"
        "    logfile = _os.path.join(_log_dir, 'casa-%d.log' % _os.getpid())\n"
        "else:  # never litter the working directory with casa-*.log\n"
        "    import tempfile as _tempfile\n"
        "    _log_dir = _os.path.join(_tempfile.gettempdir(), 'contimg-casa-logs')\n"
        "    _os.makedirs(_log_dir, exist_ok=True)\n"
        "    logfile = _os.path.join(_log_dir, 'casa-%d.log' % _os.getpid())\n"
    )


def default_site_config_path() -> Path:
    """Where the site config is installed: the environment's site-packages."""
    return Path(sysconfig.get_paths()["purelib"]) / SITE_CONFIG_NAME


def install_site_config(path: Path | None = None) -> Path:
    """Write (or refresh) the offline site config; idempotent.

    A ``casasiteconfig.py`` that contimg did not write is left alone and a
    :class:`RuntimeError` explains why.
    """
    path = path or default_site_config_path()
    text = site_config_text()
    if path.exists():
        current = path.read_text()
        if current == text:
            return path
        if _MARKER not in current:
            raise RuntimeError(
                f"{path} exists and was not written by contimg; not overwriting it. "
                "Make sure it sets measurespath to offline data and measures_auto_update "
                "= data_auto_update = False, or remove it and rerun."
            )
    path.write_text(text)
    return path


def user_config_warnings(home: Path | None = None) -> list[str]:
    """Problems in the user's ``~/.casa/config.py`` that would make CASA go online."""
    cfg = (home or Path.home()) / ".casa" / "config.py"
    if not cfg.exists():
        return []
    text = cfg.read_text(errors="replace")
    problems = []
    for key in ("measures_auto_update", "data_auto_update"):
        for line in text.splitlines():
            stripped = line.split("#", 1)[0].replace(" ", "")
            if stripped.startswith(f"{key}=") and "True" in stripped:
                problems.append(f"{cfg} sets {key} = True: CASA would try the network")
    if "measurespath" in text:
        problems.append(f"{cfg} sets measurespath, which overrides contimg's offline measures data")
    return problems


def configure_environment(log_dir: Path | None = None) -> None:
    """Prepare the process environment before casatools is imported.

    Sets ``CASASITECONFIG`` to the installed site config (writing one into the
    state directory if the environment has none), and records where CASA should
    log. Safe to call many times.
    """
    if "CASASITECONFIG" not in os.environ:
        path = default_site_config_path()
        if not path.exists() or _MARKER not in path.read_text():
            fallback_dir = (log_dir or Path.cwd())
            fallback_dir.mkdir(parents=True, exist_ok=True)
            path = fallback_dir / SITE_CONFIG_NAME
            path.write_text(site_config_text())
        os.environ["CASASITECONFIG"] = str(path)
    if log_dir is not None:
        os.environ["CONTIMG_CASA_LOG_DIR"] = str(log_dir)
    for problem in user_config_warnings():
        log.warning("%s", problem)


def _set_logfile(tools: ModuleType) -> None:
    log_dir = Path(os.environ.get("CONTIMG_CASA_LOG_DIR", "") or _default_log_dir())
    log_dir.mkdir(parents=True, exist_ok=True)
    logfile = log_dir / f"casa-{os.getpid()}.log"
    sink = tools.logsink()
    sink.setlogfile(str(logfile))
    sink.showconsole(False)
    try:
        tools.casalog.setlogfile(str(logfile))  # type: ignore[attr-defined]
    except AttributeError:
        pass


def _default_log_dir() -> Path:
    from contimg.config import load_settings

    return load_settings().paths.state / "casa-logs"


def casatools() -> ModuleType:
    """Import casatools configured offline, logging to the state directory."""
    if "casatools" not in sys.modules:
        # casatasks opens its log file at import, before we could redirect it:
        # the site config reads the directory from this variable.
        os.environ.setdefault("CONTIMG_CASA_LOG_DIR", str(_default_log_dir()))
        configure_environment()
        import casatools as tools

        _set_logfile(tools)
    return sys.modules["casatools"]


def casatasks() -> ModuleType:
    """Import casatasks (after :func:`casatools`), logging to the state directory."""
    casatools()
    if "casatasks" not in sys.modules:
        import casatasks as tasks

        log_dir = Path(os.environ.get("CONTIMG_CASA_LOG_DIR", "") or _default_log_dir())
        tasks.casalog.setlogfile(str(log_dir / f"casa-{os.getpid()}.log"))
        tasks.casalog.showconsole(False)
    return sys.modules["casatasks"]
