"""Every public function with more than two parameters documents them (numpydoc ``Parameters``) and what it returns.

Static: the source is parsed, nothing imported. A function counts as public
when neither it nor its class starts with an underscore; ``self``/``cls`` are
not counted. ``Returns`` (or ``Yields``) is asked for when the function is
annotated to return something other than ``None``.

Web route handlers (decorated ``@router.get(...)``, ``@app.post(...)`` ...) are exempt: their interface is
the HTTP API, documented by OpenAPI (``/docs``) and docs/web.md, and most of their parameters are injected.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contimg", "workers", "beat")


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> list[str]:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    if in_class and names and names[0] in ("self", "cls"):
        names = names[1:]
    if a.vararg:
        names.append(a.vararg.arg)
    if a.kwarg:
        names.append(a.kwarg.arg)
    return names


def _returns_something(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    r = fn.returns
    return r is not None and not (isinstance(r, ast.Constant) and r.value is None)


_ROUTE_METHODS = {"get", "post", "put", "patch", "delete"}


def _is_route(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for dec in fn.decorator_list:
        if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr in _ROUTE_METHODS
                and isinstance(dec.func.value, ast.Name) and dec.func.value.id in ("router", "app")):
            return True
    return False


def undocumented() -> list[str]:
    """``path:line name: what is missing`` for each public function with > 2 parameters lacking sections."""
    out: list[str] = []

    def visit(node: ast.AST, path: Path, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                visit(child, path, f"{prefix}{child.name}.", True)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and not child.name.startswith("_"):
                if len(_params(child, in_class)) <= 2 or _is_route(child):
                    continue
                doc = ast.get_docstring(child) or ""
                lacking = []
                if "Parameters\n" not in doc or "----------" not in doc:
                    lacking.append("Parameters")
                if _returns_something(child) and "Returns\n" not in doc and "Yields\n" not in doc:
                    lacking.append("Returns")
                if lacking:
                    out.append(f"{path.relative_to(ROOT)}:{child.lineno} {prefix}{child.name}: no {' or '.join(lacking)}")

    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            visit(ast.parse(path.read_text(), filename=str(path)), path, "", False)
    return out


def test_public_functions_with_more_than_two_parameters_document_them():
    missing = undocumented()
    assert not missing, f"{len(missing)} public function(s) lack numpydoc sections:\n" + "\n".join(missing)


def test_the_check_sees_a_missing_section(tmp_path):
    """The check itself: a function without sections is reported, one with them is not."""
    bare = ast.parse("def f(a, b, c) -> int:\n    '''Sum.'''\n    return a + b + c\n")
    fn = bare.body[0]
    assert len(_params(fn, False)) == 3 and _returns_something(fn)
    doc = ast.get_docstring(fn) or ""
    assert "Parameters\n" not in doc
