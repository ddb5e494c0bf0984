"""Models come from installed packages, never from the network: the Hugging Face hub is
switched off while kgmem loads one, and the importing program's own setting is restored
after (`import kgmem` changes nothing in the environment)."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_VARS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def _truthy(value: str | None) -> bool:
    return (value or "").upper() in {"1", "ON", "YES", "TRUE"}


@contextmanager
def offline() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in _VARS}
    os.environ.update(_VARS)
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # imported already: its flag was read from the environment then
        hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        hub = sys.modules.get("huggingface_hub.constants")
        if hub is not None:  # give back the importer's own choice
            hub.HF_HUB_OFFLINE = _truthy(saved["HF_HUB_OFFLINE"] or saved["TRANSFORMERS_OFFLINE"])
