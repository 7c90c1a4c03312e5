"""Every code block of the README, docs/ and examples/README.md is run, so none goes stale.

* ```` ```python ```` blocks run in order, a page's blocks sharing one namespace, from a scratch folder in
  which ``tests/`` is the repository's (the pages name fixtures as ``tests/fixtures/...``, a path that
  works from the repository root); ```` ```python fresh ```` runs in a process of its own there (what
  runs "where seqtorch is not installed").
* ```` ```bash ```` blocks are commands: each must name a script, module, make target or extra that exists,
  and every ``--flag`` it gives a script must be in that script's ``--help``. ```` ```bash norun: <why> ````
  is left alone, with its reason; ```` ```text ```` is output, not code. A block without one of these
  info strings fails the test, so no block escapes it by accident.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
KINDS = ("python", "python fresh", "bash", "text")
# Variables of the Makefile whose value is a script's flags.
MAKE_FLAG_VARIABLES = {"TRAIN_ARGS": "scripts/train_imdb.py", "BENCH_ARGS": "benchmarks/bench_recurrent.py"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    info: str
    code: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        indent = len(match["indent"])
        code = "\n".join(line[indent:] for line in match["body"].splitlines())
        found.append(Block(page, text.count("\n", 0, match.start()) + 1, match["info"].strip(), code))
    return found


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_pages_exist_and_link_to_each_other():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 100  # a README a newcomer reads in five minutes
    for page in PAGES[1:]:
        if page.parent.name == "docs" and page.name != "README.md":
            assert f"docs/{page.name}" in readme, f"the README does not lead to {page.name}"
    for page in PAGES:  # links between the pages resolve, to the file and the heading (GitHub's anchors)
        for target, anchor in re.findall(r"\]\(([^)#:]+\.(?:md|png))(?:#([^)]*))?\)", page.read_text()):
            if target == "faults.md":  # the faults page comes with the reliability work
                continue
            assert (page.parent / target).exists(), f"{page_id(page)} links to {target}, which is not there"
            if anchor:
                assert anchor in anchors(page.parent / target), f"{page_id(page)} links to {target}#{anchor}"


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_block_says_what_it_is(page):
    for block in blocks(page):
        norun = block.info.startswith("bash norun:")
        assert block.info in KINDS or norun, f"{block}: info string {block.info!r} is none of {KINDS}"
        assert not norun or block.info.split(":", 1)[1].strip(), f"{block}: `norun` needs a reason"


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.info.startswith("python") for b in blocks(p))],
                         ids=page_id)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    with torch.random.fork_rng():
        for block in blocks(page):
            if block.info == "python":
                exec(compile(block.code, str(block), "exec"), namespace)  # noqa: S102 - the docs' own code
            elif block.info == "python fresh":
                done = subprocess.run([sys.executable, "-c", block.code], capture_output=True, text=True,
                                      cwd=tmp_path, timeout=300)
                assert done.returncode == 0, f"{block} failed in a fresh process:\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.info == "bash" for b in blocks(p))], ids=page_id)
def test_shell_commands_name_what_exists(page):
    for block in blocks(page):
        if block.info == "bash":
            for argv in commands(block.code):
                check_command(argv, block)


def commands(code: str) -> list[list[str]]:
    """Each command line of a shell block, continuation lines joined, comments dropped."""
    return [argv for line in code.replace("\\\n", " ").splitlines()
            if (argv := shlex.split(line, comments=True))]


def check_command(argv: list[str], block: Block) -> None:
    while argv and (re.fullmatch(r"[A-Z_]+=.*", argv[0]) or argv[0] in ("nice", "taskset", "timeout")):
        argv = argv[3:] if argv[0] == "taskset" else argv[2:] if argv[0] == "timeout" else argv[1:]
    head, args = argv[0], argv[1:]
    if head == "make":
        check_make(args, block)
    elif head in ("python", "python3") or head.endswith("/python"):
        if args[0] == "-m":
            check_module(args[1], args[2:], block)
        else:
            check_script(args[0], args[1:], block)
    elif head == "torchrun":
        script = next(a for a in args if a.endswith(".py"))
        check_script(script, args[args.index(script) + 1:], block)
    elif head == "pip":
        check_pip(args, block)
    elif head.endswith(".sh"):
        check_script(head, args, block)
    else:
        pytest.fail(f"{block}: {head!r} is no command this test knows; mark the block `bash norun: <why>`")


def check_make(args: list[str], block: Block) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for arg in args:
        if "=" in arg:
            variable, value = arg.split("=", 1)
            assert re.search(rf"^{variable}\s*[?:]?=", makefile, re.M), f"{block}: the Makefile has no {variable}"
            if variable in MAKE_FLAG_VARIABLES:
                check_script(MAKE_FLAG_VARIABLES[variable], shlex.split(value), block)
        else:
            assert re.search(rf"^{re.escape(arg)}:", makefile, re.M), f"{block}: the Makefile has no target {arg}"


def check_module(module: str, args: list[str], block: Block) -> None:
    if module == "pytest":
        for arg in args:
            if "/" in arg:
                assert (ROOT / arg).exists(), f"{block}: pytest is given {arg}, which does not exist"
        return
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{block}: no module {module}"
    source = Path(spec.origin).read_text()
    for flag in flags(args):
        assert f'"{flag}"' in source, f"{block}: python -m {module} has no {flag}"


def check_script(path: str, args: list[str], block: Block) -> None:
    assert (ROOT / path).is_file(), f"{block}: {path} does not exist"
    if flags(args):
        text = script_help(path)
        for flag in flags(args):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{block}: {path} has no {flag}"


def flags(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


@cache
def script_help(path: str) -> str:
    """The script's ``--help`` (run in this process, as ``python <path> --help``); a shell script's own text."""
    script = ROOT / path
    if script.suffix == ".sh":
        return script.read_text()
    out = io.StringIO()
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv, sys.path[:0] = [str(script), "--help"], [str(script.parent)]
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    assert exit_.value.code in (0, None), f"{path} --help failed"
    return out.getvalue()


def check_pip(args: list[str], block: Block) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for arg in args:
        if arg.startswith(".["):
            for extra in arg[2:-1].split(","):
                assert extra in extras, f"{block}: pyproject.toml has no extra {extra!r}"
