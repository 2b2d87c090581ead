"""The package structure (issue 12): steps never import each other, and files stay small.

A step package (components/<step>/) may import ``components.core``, the shared top-level modules
(io, schema, download, errors, clitools, kfp_support) and itself — never another step. Shared
code (components/core/, components/*.py) imports no step at all. Every import counts: module
level, inside functions (the KFP component bodies and the lazy imports), relative ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = REPO / "components"
STEPS = ("ingest", "stats", "train", "evaluate", "report")
MAX_LINES = 400


def module_name(path: Path) -> str:
    """components/train/cli.py → components.train.cli; a package's __init__ → the package."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, at any depth.

    ``from X import a, b`` yields X.a and X.b as well as X (a may be a sub-module of X)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def step_of(module: str) -> str | None:
    """The step a module belongs to: components.<step>[.…] → <step>; else None."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "components" and parts[1] in STEPS:
        return parts[1]
    return None


def violations(path: Path, source: str) -> list[str]:
    """One line per import of another step: ``file:line: step X imports step Y (module)``."""
    module = module_name(path)
    own = step_of(module)
    who = f"step {own}" if own else "shared code"
    first: dict[tuple[int, str], str] = {}
    for line, target in imported_modules(source, module, path.name == "__init__.py"):
        other = step_of(target)
        if other is not None and other != own:
            first.setdefault((line, other), target)
    return [
        f"{path.relative_to(REPO)}:{line}: {who} imports step {other} ({target})"
        for (line, other), target in sorted(first.items())
    ]


def python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_step_imports_another_step():
    found = [v for path in python_files(COMPONENTS) for v in violations(path, path.read_text())]
    assert not found, "steps must share code through components.core:\n" + "\n".join(found)


def test_the_walk_sees_nested_relative_and_from_imports():
    """The check itself can fail: each way of importing another step is caught, with its line."""
    source = (
        "import components.io\n"
        "from components.core import ranking\n"
        "from components.train import cli\n"  # the own step: fine
        "def f():\n"
        "    from components.evaluate.evaluate import evaluate\n"  # line 5: inside a function
        "    import components.report.report\n"  # line 6
        "from .. import stats\n"  # line 7: relative, components.stats
        "from components import ingest\n"  # line 8: a step as a name of components
    )
    found = violations(COMPONENTS / "train" / "example.py", source)
    assert [v.split(": ")[0] for v in found] == [
        "components/train/example.py:5",
        "components/train/example.py:6",
        "components/train/example.py:7",
        "components/train/example.py:8",
    ]
    assert all("step train imports step" in v for v in found)
    assert violations(COMPONENTS / "core" / "x.py", "from components.stats import cli\n") == [
        "components/core/x.py:1: shared code imports step stats (components.stats)"
    ]


def too_long() -> list[str]:
    files = python_files(COMPONENTS, REPO / "pipelines")
    lengths = {p: len(p.read_text().splitlines()) for p in files}
    return [f"{p.relative_to(REPO)}: {n} lines" for p, n in lengths.items() if n > MAX_LINES]


def test_no_file_is_over_400_lines():
    long = too_long()
    assert not long, "files of one idea stay under 400 lines:\n" + "\n".join(long)


def test_every_logger_is_under_dwlrec():
    """``logging.getLogger("dwlrec.<part>")`` everywhere, so one handler on "dwlrec" (what the
    train task and `dwlrec run` configure) shows every step's messages."""
    wrong = []
    for path in [*COMPONENTS.rglob("*.py"), *(REPO / "pipelines").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and node.args  # getLogger() = the root logger, configured on purpose
            ):
                name = node.args[0]
                literal = isinstance(name, ast.Constant) and isinstance(name.value, str)
                if not (literal and (name.value == "dwlrec" or name.value.startswith("dwlrec."))):
                    wrong.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert wrong == []
