"""Static checks of the deployment files: compose.yaml, the Dockerfile, the Makefile, CI.

There is no Docker engine on the build machines, so these tests check what can be
checked without one: that compose.yaml parses, that every service runs a real
``contimg`` subcommand with options the real parser accepts, that every
``CONTIMG_*`` variable is a real setting (by loading the settings under exactly
that environment), that volumes agree with the settings, and that the Dockerfile
and the Makefile say what the README promises.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import sys
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

from contimg.cli import build_parser  # noqa: E402
from contimg.config import load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / "docker" / "Dockerfile.dockerignore"

REQUIRED_SERVICES = {"redis", "postgres", "producer", "worker-convert", "worker", "beat", "flower", "web"}
SCALABLE_SERVICES = {"worker-convert", "worker", "worker-housekeeping"}

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """Resolve compose ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` as compose would
    with none of the variables set (a required one gets a placeholder)."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            op, arg = m.group(2), m.group(3)
            if op and op.endswith("-"):
                return arg
            if op and op.endswith("?"):
                return f"placeholder-{m.group(1).lower()}"
            return ""
        return _INTERPOLATION.sub(repl, value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def contimg_services(compose) -> dict[str, dict[str, Any]]:
    """The services that run the contimg image, interpolated."""
    services = {
        name: interpolate(svc) for name, svc in compose["services"].items()
        if "build" in svc or str(svc.get("image", "")).startswith("contimg")
    }
    assert services, "no service runs the contimg image"
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    """Volumes in long syntax."""
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            source, target, *_ = vol.split(":") + [""]
            kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
            out.append({"type": kind, "source": source, "target": target})
        else:
            out.append(vol)
    return out


def _settings_for(service: dict[str, Any], monkeypatch):
    for key in list(os.environ):
        if key.startswith("CONTIMG_"):
            monkeypatch.delenv(key)
    for key, value in _environment(service).items():
        monkeypatch.setenv(key, value)
    return load_settings()


# ------------------------------------------------------------------ compose.yaml
def test_compose_has_required_services(compose):
    missing = REQUIRED_SERVICES - set(compose["services"])
    assert not missing, f"compose.yaml lacks services {sorted(missing)}"


def test_scalable_services_have_no_fixed_names(compose):
    for name in SCALABLE_SERVICES & set(compose["services"]):
        svc = compose["services"][name]
        assert "container_name" not in svc, f"{name}: container_name prevents --scale"
        assert not svc.get("ports"), f"{name}: published ports prevent --scale"


def test_every_service_command_parses(contimg_services, capsys):
    parser = build_parser()
    subcommands = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 - the real parser
    problems = []
    for name, svc in contimg_services.items():
        command = svc.get("command")
        if not (isinstance(command, list) and command):
            problems.append(f"{name}: command must be an exec-form list")
            continue
        if command[0] not in subcommands:
            problems.append(f"{name}: 'contimg {command[0]}' is not a subcommand (have {sorted(subcommands)})")
            continue
        try:
            args = parser.parse_args(command)
        except SystemExit:  # argparse reports bad options by exiting
            problems.append(f"{name}: 'contimg {shlex.join(command)}': {capsys.readouterr().err.strip()}")
            continue
        if args.command != command[0]:
            problems.append(f"{name}: parsed as {args.command}")
    assert not problems, "\n".join(problems)


def test_every_queue_has_a_worker(contimg_services):
    app = pytest.importorskip("workers.app")
    consumed: set[str] = set()
    for svc in contimg_services.values():
        command = svc["command"]
        if command[0] == "worker" and "--queues" in command:
            consumed.update(q.strip() for q in command[command.index("--queues") + 1].split(","))
    assert set(app.ALL_QUEUES) <= consumed, f"no worker consumes {sorted(set(app.ALL_QUEUES) - consumed)}"
    assert consumed <= set(app.ALL_QUEUES), f"workers consume unknown queues {sorted(consumed - set(app.ALL_QUEUES))}"


def test_environment_keys_are_real_settings(contimg_services, monkeypatch):
    for name, svc in contimg_services.items():
        env = _environment(svc)
        assert all(k.startswith("CONTIMG_") for k in env), f"{name}: non-contimg variables {sorted(env)}"
        with monkeypatch.context() as mp:
            settings = _settings_for(svc, mp)  # raises ConfigError naming any bad key
            assert settings.broker_configured, f"{name}: CONTIMG_BROKER_URL not set"
            assert settings.broker_url.startswith("redis://redis:")
            assert settings.database.startswith("postgresql+psycopg2://"), f"{name}: {settings.database}"
            assert "@postgres:5432/" in settings.database


def test_data_root_and_staging_volumes_agree_with_settings(compose, contimg_services, monkeypatch):
    declared = set(compose.get("volumes") or {})
    for name, svc in contimg_services.items():
        with monkeypatch.context() as mp:
            settings = _settings_for(svc, mp)
        mounts = {v["target"]: v for v in _volumes(svc)}
        root = str(settings.paths.root)
        assert root in mounts, f"{name}: nothing mounted at the data root {root}"
        source = mounts[root].get("source", "")
        if mounts[root]["type"] == "volume":
            assert source in declared, f"{name}: volume {source!r} is not declared"
        staging = settings.paths.staging
        if settings.staging_dir is not None:
            assert str(staging) in mounts, f"{name}: CONTIMG_STAGING_DIR={staging} is not mounted"
        else:
            # staging falls back to /dev/shm/contimg or <data_root>/tmp: both exist in the container
            assert staging == Path("/dev/shm/contimg") or staging.is_relative_to(settings.paths.root)


def test_convert_worker_stages_on_tmpfs(contimg_services, monkeypatch):
    svc = contimg_services["worker-convert"]
    with monkeypatch.context() as mp:
        settings = _settings_for(svc, mp)
    assert settings.staging_dir is not None, "worker-convert: set CONTIMG_STAGING_DIR"
    tmpfs = [v for v in _volumes(svc) if v["type"] == "tmpfs"]
    tmpfs_targets = {v["target"] for v in tmpfs} | set(svc.get("tmpfs") or [])
    assert str(settings.paths.staging) in tmpfs_targets
    assert not settings.paths.staging.is_relative_to(settings.paths.root)


def test_flower_is_published_with_basic_auth(compose, contimg_services, monkeypatch):
    raw = compose["services"]["flower"]
    password = raw["environment"]["CONTIMG_MONITORING__FLOWER_PASSWORD"]
    assert ":?" in password, "the Flower password must be required, not defaulted"
    svc = contimg_services["flower"]
    with monkeypatch.context() as mp:
        settings = _settings_for(svc, mp)
    mon = settings.monitoring
    assert mon.flower_address == "0.0.0.0", "Flower must listen on all interfaces inside its container"
    published = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports", [])]
    assert str(mon.flower_port) in published


def test_web_is_published_with_an_operator_login(compose, contimg_services, monkeypatch):
    raw = compose["services"]["web"]
    assert raw["command"] == ["web"]
    password = raw["environment"]["CONTIMG_WEB__OPERATOR_PASSWORD"]
    assert ":?" in password, "the web's operator password must be required, not defaulted"
    svc = contimg_services["web"]
    with monkeypatch.context() as mp:
        settings = _settings_for(svc, mp)
    assert settings.web.host == "0.0.0.0", "the web server must listen on all interfaces inside its container"
    assert settings.web.operator_password is not None
    published = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports", [])]
    assert str(settings.web.port) in published
    assert "/healthz" in " ".join(raw["healthcheck"]["test"])


def test_backing_services_are_healthchecked_and_persistent(compose):
    for name in ("redis", "postgres"):
        svc = compose["services"][name]
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        assert _volumes(svc), f"{name}: no volume, data lost on restart"
    for name, svc in compose["services"].items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in compose["services"]
            if dep in ("redis", "postgres"):
                assert cond.get("condition") == "service_healthy"


def test_schema_is_migrated_before_anything_uses_it(contimg_services):
    migrate = [n for n, svc in contimg_services.items() if svc["command"][:2] == ["db", "upgrade"]]
    assert migrate, "no service runs 'contimg db upgrade'"
    for name, svc in contimg_services.items():
        if name in migrate:
            assert svc.get("restart") == "no", f"{name}: a one-shot job must not restart"
            continue
        deps = svc.get("depends_on") or {}
        assert deps.get(migrate[0], {}).get("condition") == "service_completed_successfully", (
            f"{name} does not wait for {migrate[0]}"
        )


def test_compose_build_points_at_the_dockerfile(contimg_services):
    for name, svc in contimg_services.items():
        build = svc.get("build")
        if build:
            context = ROOT / build.get("context", ".")
            assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE


# ------------------------------------------------------------------ Dockerfile
def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_base_is_python311_bookworm():
    froms = [rest for op, rest in _dockerfile_instructions() if op == "FROM"]
    assert froms and all(re.match(r"python:3\.11[\w.-]*-bookworm", f) for f in froms), froms


def test_dockerfile_copies_files_that_exist():
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copies = [rest for op, rest in _dockerfile_instructions() if op in ("COPY", "ADD")]
    assert copies
    for rest in copies:
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
            assert src.rstrip("/") not in ignored, f"{src} is copied but excluded by {DOCKERIGNORE.name}"


def test_dockerfile_installs_wsclean_and_measures_and_runs_setup():
    runs = " ".join(rest for op, rest in _dockerfile_instructions() if op == "RUN")
    install = re.search(r"apt-get install[^&;]*", runs)
    assert install, "no apt-get install"
    for pkg in ("wsclean", "casacore-data"):
        assert re.search(rf"\b{pkg}\b", install.group(0)), f"Dockerfile does not install {pkg}"
    assert "contimg setup" in runs
    assert re.search(r"pip install[^&;]*\s\.(\s|$)", runs), "the package itself is not installed"


def test_dockerfile_runs_as_non_root_with_contimg_entrypoint():
    instructions = _dockerfile_instructions()
    users = [rest for op, rest in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entry = [rest for op, rest in instructions if op == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["contimg"]


def test_dockerignore_keeps_the_context_small():
    ignored = DOCKERIGNORE.read_text().split()
    for entry in (".git", ".venv", "contimg-data"):
        assert entry in ignored


# ------------------------------------------------------------------ Makefile and CI
def test_ci_run_calls_make_test():
    ci = ROOT / ".ci" / "run"
    text = ci.read_text()
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    assert "set -euo pipefail" in text
    assert re.search(r"^\s*(exec\s+)?make test\s*$", text, re.M)
    assert ci.stat().st_mode & stat.S_IXUSR, ".ci/run is not executable"
    subprocess.run(["bash", "-n", str(ci)], check=True)


@pytest.fixture(scope="module")
def make_dry_run():
    if shutil.which("make") is None:
        pytest.skip("GNU make not installed")

    def dry(target: str) -> str:
        proc = subprocess.run(
            ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return dry


def test_makefile_test_target_sets_up_then_runs_pytest(make_dry_run):
    out = make_dry_run("test")
    for step in ("apt-get install", "-m venv", "pip install", "-e '.[test]'", "contimg setup",
                 "CONTIMG_TEST_POSTGRES_URL", "ruff check", "bin/mypy", 'pytest -m "not slow"'):
        assert step in out, f"make test does not run {step!r}"
    assert out.index("contimg setup") < out.index("ruff check") < out.index("bin/mypy") < out.index("pytest")


def test_makefile_demo_target_runs_contimg_demo(make_dry_run):
    out = make_dry_run("demo")
    assert "contimg setup" in out
    assert re.search(r"bin/contimg demo\s*$", out, re.M)


def test_makefile_has_the_documented_targets():
    text = (ROOT / "Makefile").read_text()
    for target in ("demo", "lint", "test", "test-all", "bench", "clean", "setup", "docs"):
        assert re.search(rf"^{re.escape(target)}:", text, re.M), f"Makefile lacks target {target}"


# ------------------------------------------------------------------ docs
def test_configuration_reference_is_up_to_date():
    gen = ROOT / "docs" / "gen_config_reference.py"
    proc = subprocess.run(
        [sys.executable, str(gen)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert proc.stdout == current, "docs/configuration.md is stale: run `make docs` and commit it"


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text()[:3000]
    assert "make demo" in head and "make test" in head


def test_documented_variables_are_real_settings():
    from pydantic import BaseModel

    from contimg.config import Settings

    known = {"CONTIMG_CONFIG", "CONTIMG_CASA_LOG_DIR"}
    for name, field in Settings.model_fields.items():
        known.add(f"CONTIMG_{name.upper()}")
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            known.update(f"CONTIMG_{name.upper()}__{key.upper()}" for key in ann.model_fields)
    docs = [ROOT / "README.md", COMPOSE, *sorted((ROOT / "docs").glob("*.md"))]
    unknown = {}
    for doc in docs:
        for var in set(re.findall(r"CONTIMG_[A-Z0-9_]*[A-Z0-9]", doc.read_text())):
            if var not in known and not var.startswith("CONTIMG_TEST"):
                unknown.setdefault(doc.name, []).append(var)
    assert not unknown, f"documented variables that are not settings: {unknown}"


def test_non_editable_install_ships_every_package_file():
    """The image installs the package non-editably: every tracked file must reach the wheel.

    Python modules reach it when every directory above them is a package
    (``__init__.py``); anything else only through ``[tool.setuptools.package-data]``.
    A data file or migration missing here works in a checkout and fails in Docker.
    """
    import fnmatch
    import tomllib

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "contimg", "workers", "beat"], cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_data = config.get("package-data", {})
    missing = []
    for name in tracked:
        path = Path(name)
        if not (ROOT / path).exists():
            continue  # deleted in the working tree
        parents = list(reversed(path.parents[:-1]))
        in_packages = all((ROOT / d / "__init__.py").exists() for d in parents)
        if path.suffix == ".py" and in_packages:
            continue
        top = parents[0].as_posix() if parents else ""
        rel = path.relative_to(top).as_posix() if top else name
        # setuptools globs: `*` does not cross a directory separator
        patterns = [fnmatch.translate(p).replace(".*", "[^/]*") for p in package_data.get(top, [])]
        if not any(re.match(p, rel) for p in patterns):
            missing.append(name)
    assert not missing, f"not installed by `pip install .` (add to package-data or add __init__.py): {missing}"


def test_dockerfile_build_environment_is_valid(monkeypatch):
    """ARG and ENV names reach RUN steps (and `contimg setup`) as environment variables:
    a CONTIMG_* one that is not a setting would stop the build."""
    names = {}
    for op, rest in _dockerfile_instructions():
        if op == "ARG":
            key, _, value = rest.partition("=")
            names[key.strip()] = value.strip().strip('"')
        elif op == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                names[key] = value
    for key in list(os.environ):
        if key.startswith("CONTIMG_"):
            monkeypatch.delenv(key)
    for key, value in names.items():
        if key.startswith("CONTIMG_"):
            monkeypatch.setenv(key, value)
    settings = load_settings()
    assert str(settings.paths.root) == "/data"
