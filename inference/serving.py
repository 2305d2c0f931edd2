"""Open the predictor a model version serves, whichever family it is, with its calibration and evidence."""

from __future__ import annotations

from inference.embedders import EmbedderPool
from inference.encoder_head import EncoderHead
from inference.encoder_predictor import Evidence, EncoderPredictor, LlamaEmbedder
from inference.evidence import EvidenceIndex
from inference.llama_predictor import LlamaPredictor
from inference.priors import VersionPrior
from inference.registry import VersionInfo
from inference.stacking import Mix, TfidfBranch
from inference.task import Task


def load_predictor(info: VersionInfo, task: Task, *, threads: int | None = None, reasons: bool = True,
                   family: str | None = None, calibrated: bool = True, evidence: bool = True, every_voice: bool = False,
                   embedders: EmbedderPool | None = None, prior: bool = True):
    """The served predictor of a version (or of one of its families); close() it when done.
    every_voice: an encoder predictor with every voice the version has loaded, mixed or not (benchmarks).
    embedders: the process's pool; an encoder version then shares its encoder file (by sha256) with every
    other version of the pool that serves the same one, and one pass per ticket feeds them all.
    prior=False: without the version's label prior (the family part's "prior"; benchmarks show its effect)."""
    manifest = info.manifest
    family = family or manifest.get("family", "decoder")
    part = manifest.get("families", {}).get(family, {})
    temperature = part.get("calibration", {}).get("temperature", 1.0) if calibrated else 1.0
    label_prior = VersionPrior.from_dict(part.get("prior")) if prior else None  # absent in older versions
    index = EvidenceIndex.load(info.path) if evidence else None
    k = manifest.get("evidence", {}).get("k", 3)
    if family == "encoder":
        head = EncoderHead.load(info.path / manifest["files"]["head"])
        mix = Mix.from_dict(part.get("mix"))
        has_tfidf = "tfidf" in manifest["files"]
        tfidf = TfidfBranch.load(info.path / manifest["files"]["tfidf"]) if has_tfidf and (mix.tfidf or every_voice) else None
        if index is None and (mix.knn or every_voice):  # the vote needs the index even where evidence is not shown
            index = EvidenceIndex.load(info.path)
        path = info.gguf(part.get("serve", "encoder-q8_0"))
        stored = manifest.get("artifacts", {}).get(path.relative_to(info.path).as_posix(), {})
        embedder = embedders.open(path, sha256=stored["sha256"], max_length=head.max_length,
                                  max_chunks=head.max_chunks, n_threads=threads) \
            if embedders is not None and stored.get("sha256") else None
        try:
            return EncoderPredictor(path, head, task, version=info.name, temperature=temperature, index=index,
                                    evidence_k=k, n_threads=threads, tfidf=tfidf, mix=mix, show_evidence=evidence,
                                    embedder=embedder, prior=label_prior)
        except BaseException:
            if embedder is not None:
                embedder.close()
            raise
    helper = None
    if index is not None:
        embedder = LlamaEmbedder(info.path / manifest["evidence"]["embedder"],
                                 max_length=manifest["evidence"].get("max_length", 128),
                                 max_chunks=manifest["evidence"].get("max_chunks", 1), n_threads=threads)
        helper = Evidence(embedder, index, k)
    return LlamaPredictor(info.gguf(part.get("serve")), task, version=info.name, reasons=reasons,
                          n_threads=threads, temperature=temperature, evidence=helper, prior=label_prior)
