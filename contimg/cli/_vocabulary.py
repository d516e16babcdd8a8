"""The JSON vocabulary shared by the commands' ``--json`` documents (docs/json.md), as a checker.

Rules:

* ``ms_path`` is a Measurement Set's absolute path (``ms_paths`` a list of them);
* ``group_key`` names a group (its timestamp, ``YYYY-MM-DDTHH:MM:SS``), never ``group``;
* ``epoch_mjd`` is an observation's epoch (MJD, UTC); other times are ``<what>_mjd`` (``start_mjd``,
  ``first_detected_mjd``, ``t_center_mjd``), never a bare ``mjd`` or ``mid_mjd``;
* a count of things is ``n_<things>`` (``n_sources``, ``n_subbands``, ``n_failed``); axis lengths of an MS keep
  pyuvdata's names (``Nrows``, ``Nfreqs``);
* units are suffixes: ``_jy``, ``_deg``, ``_arcsec``, ``_hz``, ``_s`` (``seconds`` for a duration), ``_mjd``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

_RENAMED = {"group": "group_key", "mjd": "epoch_mjd", "mid_mjd": "epoch_mjd", "nsubbands": "n_subbands",
            "retries": "n_retries", "registered": "n_registered", "path_ms": "ms_path", "ms": "ms_path"}
_COUNT = re.compile(r"^n(sources|subbands|images|groups|epochs|rows|measured|files)$")
"""Counts without the underscore (pyuvdata's axis lengths, ``Nfreqs``, are capitalised and allowed)."""


def vocabulary_problems(doc: Any, where: str = "$") -> list[str]:
    """Where ``doc`` (a command's JSON document) breaks the shared vocabulary; [] if nowhere.

    Parameters
    ----------
    doc
        The document (dicts, lists and values, as ``json.loads`` gives).
    where
        Its location, for the messages (JSONPath-like).

    Returns
    -------
    list of str
        One message per problem, e.g. ``$.groups[0].group: say group_key``.
    """
    problems: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            here = f"{where}.{key}"
            if key in _RENAMED:
                problems.append(f"{here}: say {_RENAMED[key]}")
            elif _COUNT.match(key):
                problems.append(f"{here}: a count is n_<things>")
            if key == "ms_path" and value is not None and not PurePosixPath(str(value)).is_absolute():
                problems.append(f"{here}: {value!r} is not absolute")
            if key == "ms_paths" and any(not PurePosixPath(str(v)).is_absolute() for v in value or []):
                problems.append(f"{here}: not every path is absolute")
            problems += vocabulary_problems(value, here)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            problems += vocabulary_problems(value, f"{where}[{i}]")
    return problems
