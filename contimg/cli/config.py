"""``contimg config show``: the effective settings (defaults + TOML file + environment), secrets masked."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

NAME = "config"
HELP = "show the effective settings (defaults, the CONTIMG_CONFIG file, CONTIMG_* variables), secrets masked"

MASK = "***"


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the effective settings as TOML (or JSON) with where each came from",
                          description="Print the effective settings as TOML-like text: each value that is not "
                                      "the default is followed by where it came from (env or file). Passwords in "
                                      "URLs and secret fields are shown as ***.")
    show.add_argument("--json", action="store_true",
                      help='print {"settings": {...}, "sources": {"section.name": "env"|"file"}, "derived": {...}}')


def _plain(value: Any, secrets: list[str]) -> Any:
    """A settings value as JSON-able data, with secrets masked."""
    from pydantic import BaseModel, SecretStr

    from contimg.secrets import mask_text, mask_url

    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name), secrets) for name in type(value).model_fields}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_text(mask_url(value), secrets)
    if isinstance(value, (list, tuple)):
        return [_plain(v, secrets) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, secrets) for k, v in value.items()}
    return value


def _file_data() -> dict[str, Any]:
    """The TOML file named by ``CONTIMG_CONFIG`` (already read and checked by the settings), or {}."""
    import tomllib

    from contimg.config import CONFIG_FILE_VAR

    name = os.environ.get(CONFIG_FILE_VAR)
    return tomllib.loads(Path(name).read_text()) if name else {}


def setting_sources(settings) -> dict[str, str]:
    """Where each setting that is not its default came from: ``"env"`` or ``"file"`` (dotted names).

    Parameters
    ----------
    settings
        The loaded :class:`contimg.config.Settings`.

    Returns
    -------
    dict
        ``{"imaging.backend": "env", "data_root": "file", ...}``; a whole section given as one JSON variable
        (``CONTIMG_IMAGING='{...}'``) marks each of its fields. The environment wins over the file.
    """
    from pydantic import BaseModel

    from contimg.config import ENV_PREFIX

    data = _file_data()
    out: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        env = ENV_PREFIX + name.upper()
        if isinstance(value, BaseModel):
            found = data.get(name)
            section: dict[str, Any] = found if isinstance(found, dict) else {}
            for sub in type(value).model_fields:
                if f"{env}__{sub.upper()}" in os.environ or env in os.environ:
                    out[f"{name}.{sub}"] = "env"
                elif sub in section:
                    out[f"{name}.{sub}"] = "file"
        elif env in os.environ:
            out[name] = "env"
        elif name in data:
            out[name] = "file"
    return out


def effective_settings(settings) -> dict[str, Any]:
    """The settings as a JSON-able document, secrets masked.

    Parameters
    ----------
    settings
        The loaded :class:`contimg.config.Settings`.

    Returns
    -------
    dict
        ``settings`` (every field, sections as nested dicts; URL passwords and secret fields ``***``),
        ``sources`` (:func:`setting_sources`), ``derived`` (the database URL and the resolved directories) and
        ``config_file`` (the ``CONTIMG_CONFIG`` file, or None).
    """
    from contimg.config import CONFIG_FILE_VAR
    from contimg.secrets import mask_url, settings_secrets

    secrets = settings_secrets(settings)
    paths = settings.paths
    return {
        "config_file": os.environ.get(CONFIG_FILE_VAR) or None,
        "settings": _plain(settings, secrets),
        "sources": setting_sources(settings),
        "derived": {"database": mask_url(settings.database), "result_backend": mask_url(settings.result_backend_url),
                    **{f"paths.{k}": str(getattr(paths, k)) for k in type(paths).model_fields}},
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def format_toml(doc: dict[str, Any]) -> str:
    """:func:`effective_settings` as TOML-like text; unset values are comments, sources trailing comments."""
    sources = doc["sources"]
    lines = [f"# effective contimg settings (file: {doc['config_file'] or 'none'}; "
             "later wins: defaults < file < environment)"]

    def line(key: str, value: Any, dotted: str) -> str:
        origin = sources.get(dotted)
        note = f"  # {origin}" if origin else ""
        if value is None:
            return f"# {key} = (unset){note}"
        return f"{key} = {_toml_value(value)}{note}"

    sections = {k: v for k, v in doc["settings"].items() if isinstance(v, dict)}
    for key, value in doc["settings"].items():
        if key not in sections:
            lines.append(line(key, value, key))
    for name, section in sections.items():
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(line(k, v, f"{name}.{k}") for k, v in section.items())
    lines.append("")
    lines.append("# derived")
    lines.extend(f"# {k} = {_toml_value(v)}" for k, v in doc["derived"].items())
    return "\n".join(lines)


def run(args: argparse.Namespace, settings) -> int:
    doc = effective_settings(settings)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(format_toml(doc))
    return 0
