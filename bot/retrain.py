"""The queued retrain job: snapshot → train → promotion gate → a report in the triage channel."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.control import finish_run, get_run, is_paused, record_snapshot, set_run_error, start_run
from bot.promotion import apply_gate
from bot.runtime import Runtime
from bot.settings import Settings
from bot.status import report_text
from bot.suggest import slack_client
from bot.training import load_config, snapshot_for_training, train_and_gate

log = logging.getLogger(__name__)

HEADLINE = ("n", "accuracy", "macro_f1", "handoff_recall", "escalation_recall")


def promoted_by(run) -> str:
    """Who the registry's history names for a promotion by this run."""
    return f"slack:{run.requested_by}" if run.trigger == "command" else f"{run.trigger}:{run.requested_by}"


def _headline(metrics: dict | None) -> dict | None:
    return None if metrics is None else {k: metrics.get(k) for k in HEADLINE}


def gate(runtime: Runtime, summary: dict, *, by: str) -> tuple[bool, str]:
    """The promotion gate, unless an admin paused or rolled back while the candidate trained."""
    # Training takes long; the candidate was compared with the production of its start.
    live = runtime.registry.production_name()
    if live != summary["production"]:
        return False, f"production changed to {live} while it trained (rollback?); not compared, not promoted"
    if is_paused(runtime.sessions):
        return False, "retraining was paused while it trained; not promoted"
    decision = apply_gate(runtime.registry, summary, by=by, min_gain=runtime.settings.min_gain)
    return decision.promote, decision.why


def _post(runtime: Runtime, slack: WebClient | None, run) -> None:
    """Post the run's report; a Slack failure is written on the run rather than undoing its result."""
    if slack is None:
        return
    try:
        slack.chat_postMessage(channel=runtime.settings.triage_channel, text=report_text(run.to_dict()),
                               unfurl_links=False, unfurl_media=False)
    except SlackApiError as exc:
        log.warning("retrain run %s: report not posted: %s", run.id, exc.response.get("error"))
        set_run_error(runtime.sessions, run.id, f"report not posted to Slack: {exc.response.get('error')}")


def run_retrain(runtime: Runtime, slack: WebClient | None, run_id: int) -> dict:
    """Carry out one queued run; safe against redelivery (a run that is not queued is left alone)."""
    sessions = runtime.sessions
    run = start_run(sessions, run_id)
    if run is None:
        current = get_run(sessions, run_id)
        if current is None:
            raise LookupError(f"no retrain run {run_id} in the store")
        log.info("retrain run %s is %s already; nothing to do", run_id, current.status)
        return current.to_dict()
    if is_paused(sessions):
        run = finish_run(sessions, run_id, "failed", error="paused before the run started",
                         production_before=runtime.registry.production_name())
        _post(runtime, slack, run)
        return run.to_dict()
    production_before = runtime.registry.production_name()
    try:
        # Taken before reading: a label stored while the snapshot is written counts toward the next run.
        frozen_at = datetime.now(timezone.utc)
        # Reviewers disagreeing on a text is noise to the model; those examples wait for a verdict.
        snapshot = snapshot_for_training(runtime, skip_conflicts=True)
        record_snapshot(sessions, run_id, str(snapshot), frozen_at)
        summary = train_and_gate(runtime, config=load_config(runtime.settings.retrain_config), promote=False,
                                 snapshot=snapshot)
        summary["promoted"], summary["why"] = gate(runtime, summary, by=promoted_by(run))
    except BaseException as exc:
        # Recorded and reported, then re-raised so RQ marks the job failed with its traceback.
        # BaseException: RQ's timeout (JobTimeoutException) and a worker's shutdown count too.
        run = finish_run(sessions, run_id, "failed", error=f"{type(exc).__name__}: {exc}",
                         production_before=production_before)
        _post(runtime, slack, run)
        raise
    run = finish_run(sessions, run_id, "promoted" if summary["promoted"] else "kept",
                     candidate_version=summary["version"], production_before=summary["production"],
                     why=summary["why"], metrics={"candidate": _headline(summary["metrics"]),
                                                  "production": _headline(summary.get("production_metrics")),
                                                  "families": {name: _headline(part.get("metrics") or None)
                                                               for name, part in summary.get("families", {}).items()},
                                                  "family": summary.get("family"), "choice": summary.get("choice"),
                                                  "calibration": summary.get("calibration")})
    log.info("retrain run %s: %s %s (%s)", run.id, run.candidate_version, run.status, run.why)
    _post(runtime, slack, run)
    return get_run(sessions, run_id).to_dict()


def retrain_job(run_id: int) -> dict:
    """Queued job (training worker): carry out retrain run `run_id`; returns the run as JSON-safe data."""
    # Built at call time from TUESDAY_* and .env: the worker on the GPU node has its own settings.
    settings = Settings()
    return run_retrain(Runtime(settings), slack_client(settings), int(run_id))
