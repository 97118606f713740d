"""The operator's documents stay true to the code.

Every stable error code the code raises or records has a row in docs/operations.md, and no
row names a code that no longer exists; every ``vidpipe`` command the guide shows parses;
every benchmark script is in benchmarks/README.md; README.md points to the guide.

Codes are found in the syntax tree, not by grepping, so every way the project writes one
counts: ``code="x"`` and ``error_code="x"`` keywords, ``code = "x"`` class attributes, a
constant passed positionally where the called function (or dataclass) has a ``code`` or
``error_code`` parameter, ``exc.code == "x"`` comparisons and ``{"code": "x"}`` literals.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.test_compose import parse_vidpipe

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "operations.md"
SOURCES = ("pipeline", "api", "workers")
CODE_NAMES = ("code", "error_code")
CODE_SHAPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
"""Stable codes are lower-case dotted names; an upstream's codes (S3's ``NoSuchKey``) are not ours."""


def _text(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else None


def _code_positions(trees: Iterable[ast.AST]) -> dict[str, set[int]]:
    """Callables with a ``code``/``error_code`` parameter, and its position among the arguments."""
    positions: dict[str, set[int]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                params = [arg.arg for arg in [*node.args.posonlyargs, *node.args.args]]
                names = params[1:] if params[:1] in (["self"], ["cls"]) else params
            elif isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                names = [
                    f.target.id for f in node.body if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)
                ]
            else:
                continue
            for index, name in enumerate(names):
                if name in CODE_NAMES:
                    positions.setdefault(node.name, set()).add(index)
    return positions


def _codes_in(tree: ast.AST, positions: dict[str, set[int]]) -> Iterable[tuple[str, int]]:
    for node in ast.walk(tree):
        found: list[ast.AST | None] = []
        if isinstance(node, ast.keyword) and node.arg in CODE_NAMES:
            found.append(node.value)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_name(target) in CODE_NAMES for target in targets):
                found.append(node.value)
        elif isinstance(node, ast.Call) and (_name(node.func) or "") in positions:
            found += [node.args[i] for i in positions[_name(node.func) or ""] if i < len(node.args)]
        elif isinstance(node, ast.Compare) and _name(node.left) in CODE_NAMES:
            found += node.comparators
        elif isinstance(node, ast.Dict):
            found += [value for key, value in zip(node.keys, node.values, strict=True) if _text(key) in CODE_NAMES]
        for value in found:
            code = _text(value)
            if code and CODE_SHAPE.match(code):
                yield code, getattr(value, "lineno", 0)


def collect_codes(files: dict[str, str]) -> dict[str, list[str]]:
    """Every stable code in ``files`` (name to source), with where it is written."""
    trees = {name: ast.parse(source, filename=name) for name, source in files.items()}
    positions = _code_positions(trees.values())
    codes: dict[str, list[str]] = {}
    for name, tree in trees.items():
        for code, line in _codes_in(tree, positions):
            codes.setdefault(code, []).append(f"{name}:{line}")
    return codes


def source_codes() -> dict[str, list[str]]:
    files = {
        str(path.relative_to(REPO)): path.read_text(encoding="utf-8")
        for folder in SOURCES
        for path in sorted((REPO / folder).rglob("*.py"))
    }
    return collect_codes(files)


def documented_codes() -> set[str]:
    """The first cell of every table row under the guide's "Error codes" heading."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("\n## Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))


def test_the_collector_finds_a_code_in_every_form_the_project_writes_one() -> None:
    sample = """
from dataclasses import dataclass

class NotThere(Exception):
    code = "sample.class_attribute"

@dataclass
class Finish:
    status: str
    error_code: str | None

def fail(runtime, job, code, message): ...

fail(None, None, "sample.positional", "why")
Finish("rejected", "sample.dataclass_field")
raise NotThere("why", code="sample.keyword")
if exc.code == "sample.compared": pass
body = {"code": "sample.literal", "note": "sample.not_a_code"}
if exc.code == "NoSuchKey": pass
"""
    found = set(collect_codes({"sample.py": sample}))

    assert found == {
        "sample.class_attribute",
        "sample.positional",
        "sample.dataclass_field",
        "sample.keyword",
        "sample.compared",
        "sample.literal",
    }


def test_every_error_code_in_the_code_is_explained_in_the_operations_guide() -> None:
    codes = source_codes()
    documented = documented_codes()

    assert len(codes) > 50, "the collector found the project's codes"
    missing = {code: places[:3] for code, places in sorted(codes.items()) if code not in documented}
    assert not missing, "add a row to the error code table of docs/operations.md for: " + "; ".join(
        f"{code} ({', '.join(places)})" for code, places in missing.items()
    )


def test_the_operations_guide_explains_no_code_that_the_code_no_longer_has() -> None:
    stale = {code for code in documented_codes() if "<" not in code} - set(source_codes())

    assert not stale, f"these codes are documented but raised nowhere: {sorted(stale)}"


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def _vidpipe_commands(block: str) -> list[list[str]]:
    """Each ``vidpipe ...`` that starts a command in a shell block, also behind ``docker compose exec SERVICE``."""
    from tests.test_compose import compose

    services = set(compose()["services"])
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for start, word in enumerate(words):
            before = words[start - 1] if start else ""
            behind_compose = before in services and ("exec" in words[:start] or "run" in words[:start])
            if word == "vidpipe" and (start == 0 or before in _OPERATORS or behind_compose):
                command = []
                for part in words[start:]:
                    if part in _OPERATORS or part.startswith((">", "<")):
                        break
                    command.append(part)
                commands.append(command)
    return commands


_OPERATORS = ("|", "||", "&&", ";", "&")


def test_every_vidpipe_command_in_the_operations_guide_parses() -> None:
    commands = [c for block in _shell_blocks(GUIDE.read_text(encoding="utf-8")) for c in _vidpipe_commands(block)]

    assert len(commands) >= 10
    for command in commands:
        try:
            parse_vidpipe(command)
        except Exception as exc:  # one message naming the command beats click's alone
            pytest.fail(f"docs/operations.md shows `{shlex.join(command)}`, which vidpipe refuses: {exc}")


def test_every_variable_the_guide_names_is_a_setting() -> None:
    from tests.test_compose import settings_variables

    named = set(re.findall(r"\bVIDPIPE_[A-Z0-9_]+\b", GUIDE.read_text(encoding="utf-8")))

    assert named, "the guide names settings"
    assert named <= settings_variables(), f"not settings: {sorted(named - settings_variables())}"


def test_the_benchmarks_readme_says_how_to_run_every_benchmark() -> None:
    text = (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
    runs = " ".join(_shell_blocks(text))

    scripts = sorted(path.name for path in (REPO / "benchmarks").glob("bench_*.py"))
    assert scripts
    for script in scripts:
        assert f"benchmarks/{script}" in runs, f"benchmarks/README.md has no command running {script}"


def test_the_readme_points_to_the_operations_guide_for_compose() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Running with Docker Compose", 1)[1].split("\n## ", 1)[0]

    assert "docs/operations.md" in section and "docker compose up" in section
