"""The docs cannot drift from the code: the site builds strict, the benchmark pages match
their results files, every setting is documented, and the examples run.

Examples: every ```python block of a page runs (in order, one namespace per page, in a
fresh directory); every `$ ` line of a ```console block runs as a shell command and must
exit 0. ```bash and ```text blocks are illustrations (placeholders, transcripts), and so is
a block marked `<!-- not run: why -->` (one that needs a Ray cluster). Answers
come from the no-LLM reader (KGMEM_LLM=extractive): the examples are about kgmem's calls,
not the model's words, and the model's own tests are in test_llama.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kgmem import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"(<!-- not run[^>]*-->\n)?^```(\w+)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
PAGES = sorted(p for p in DOCS.rglob("*.md") if "benchmarks" not in p.parts) + [ROOT / "README.md"]


def blocks(page: Path, lang: str) -> list[str]:
    """The page's code blocks in `lang`, but those marked `<!-- not run: why -->` on the line before."""
    return [m.group(3) for m in FENCE.finditer(page.read_text()) if m.group(2) == lang and not m.group(1)]


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


# ------------------------------------------------------------------------------------ the site
def test_benchmark_pages_and_readme_table_match_their_results():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_the_site_builds_strict(tmp_path):
    mkdocs = BIN / "mkdocs"
    assert mkdocs.exists(), "mkdocs is not installed: pip install -e '.[docs]' (make install does)"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    # the references are generated: every public method and every command is on its page
    for name in ("ingest_paths", "remember", "recall", "forget", "summarize", "backup", "check_report"):
        assert f"kgmem.Memory.{name}" in api, name
    from kgmem.cli import main

    for command in main.commands:
        assert f'id="kgmem-{command}"' in cli, command


def test_the_public_api_is_documented():
    import inspect

    from kgmem import Answer, Memory
    from kgmem.pipelines.ingest import IngestReport
    from kgmem.pipelines.summarize import Summary
    from kgmem.retrieval.types import Hit

    for name, member in inspect.getmembers(Memory):
        if not name.startswith("_"):
            assert len(inspect.getdoc(member) or "") >= 40, f"Memory.{name} has no docstring worth the name"
    for cls in (Answer, Hit, Summary, IngestReport, Config):
        doc = inspect.getdoc(cls) or ""
        assert not doc.startswith(cls.__name__ + "("), f"{cls.__name__} has only dataclass's generated docstring"
        if cls is not Config:  # Config's settings are a table in docs/configuration.md (checked below)
            for f in dataclasses.fields(cls):
                assert f"{f.name}:" in doc, f"{cls.__name__}.{f.name} is not in its docstring's Attributes"


def test_readme_is_short_and_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target


def test_every_setting_and_variable_is_documented():
    page = (DOCS / "configuration.md").read_text()
    for f in dataclasses.fields(Config):
        assert f"| `{f.name}` |" in page, f"Config.{f.name} is not in docs/configuration.md"
    used = set()
    for path in (ROOT / "kgmem").rglob("*.py"):
        used |= set(re.findall(r"KGMEM_[A-Z_]+", path.read_text()))
    for name in sorted(used):
        assert f"`{name}`" in page, f"{name} is not in docs/configuration.md"


# ------------------------------------------------------------------------------------ the examples
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory like a checkout's: data/wiki-300.jsonl (its first 40 records, so the
    examples run in seconds) and benchmarks' small files."""
    d = tmp_path_factory.mktemp("docs-examples")
    (d / "data").mkdir()
    lines = (ROOT / "data" / "wiki-300.jsonl").read_text().splitlines()[:40]
    (d / "data" / "wiki-300.jsonl").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="module")
def server(workdir):
    """`kgmem serve` on a free loopback port, over its own store, answering without a model."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KGMEM_LLM": "extractive", "KGMEM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [str(BIN / "kgmem"), "serve", "--store", str(workdir / "served"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "the server exited"
    else:
        proc.kill()
        pytest.fail("kgmem serve did not start in 120 s")
    yield port
    proc.terminate()
    proc.wait(30)


def _with_port(code: str, page: Path, request) -> str:
    if "127.0.0.1:8765" in code:
        port = request.getfixturevalue("server")
        code = code.replace("127.0.0.1:8765", f"127.0.0.1:{port}")
    return code


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=_rel)
def test_python_examples_run(page, workdir, request, monkeypatch, capsys):
    here = workdir / ("py-" + page.stem)
    shutil.rmtree(here, ignore_errors=True)
    shutil.copytree(workdir / "data", here / "data")
    monkeypatch.chdir(here)
    monkeypatch.setenv("KGMEM_LLM", "extractive")
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks(page, "python")):
        code = _with_port(code, page, request)
        try:
            exec(compile(code, f"{_rel(page)}, python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # name the block: the traceback points into it
            raise AssertionError(f"{_rel(page)}, python block {i + 1} failed: {exc!r}\n{code}") from exc
    assert capsys.readouterr().out.strip(), "the examples print what they show"


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "console")], ids=_rel)
def test_console_examples_run(page, workdir, request):
    env = {
        **os.environ,
        "KGMEM_LLM": "extractive",
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for code in blocks(page, "console"):
        for line in code.splitlines():
            if not line.startswith("$ "):
                continue  # output shown in the docs
            command = _with_port(line[2:], page, request)
            done = subprocess.run(
                ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"{_rel(page)}: `{command}` exited {done.returncode}: {done.stderr[-2000:]}"
            assert done.stdout.strip(), f"{_rel(page)}: `{command}` printed nothing"
