"""Progress displays: only on a terminal, never with --json, never on standard output."""

from __future__ import annotations

import sys

from contimg.cli._progress import bar, spinner, wanted


def test_quiet_when_standard_error_is_not_a_terminal(capsys, monkeypatch):
    assert not wanted()  # pytest captures standard error: not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert wanted() and not wanted(machine_output=True)
    with bar("x", total=3, enabled=False) as b:
        b.advance()
        b.update(description="y", completed=2)
        b.log("a line for people")
    out, err = capsys.readouterr()
    assert out == "" and err == "a line for people\n"


def test_a_drawn_bar_writes_to_standard_error_only(capsys):
    with bar("groups", total=2, enabled=True, unit="groups") as b:
        b.advance()
        b.log("2025-10-02T10:02:45: convert ...")
        b.update(completed=2, description="done")
    with spinner("imaging", enabled=True):
        pass
    out, err = capsys.readouterr()
    assert out == "" and "2025-10-02T10:02:45: convert" in err
