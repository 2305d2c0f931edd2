"""A manager's sign-off before a candidate that passed the gate goes live (TUESDAY_PROMOTION_SIGNOFF).

With the setting on, a run whose candidate passes the gate finishes as "passed": production is
unchanged, and the report carries an "Approve promotion" button and the review sheet's link. A
manager's click (or `tuesday promote VERSION --by NAME`) then

1. switches production from the version the candidate was compared with (compare-and-set: if
   production moved since, nothing changes, the run is closed as kept and the signer is told why),
2. marks the run promoted with who signed and when, and writes the audit entry, in one transaction,
3. adds signoff.json next to the version (create-only), so its model card says who signed.

`tuesday train` has no run row of its own; with the setting on, a candidate that passes its gate
gets one, finished as "passed", so both paths wait in the same place for the same approval.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import select, update

from bot.lifecycle.reports import headline_metrics
from bot.lifecycle.shadow_gate import pending_reason
from bot.queues import sweep_tickets
from bot.store import audit
from bot.store.base import as_utc, utc_now
from bot.store.production import PointerMoved
from bot.store.runs import PASSED, RetrainRun, get_run, pause_state
from inference.artifacts import ArtifactError, ArtifactExists
from inference.errors import TuesdayError
from inference.registry import SIGNOFF

log = logging.getLogger(__name__)

ACTION = "promote.signoff"  # audit log action


class SignOffRefused(TuesdayError):
    """The promotion cannot be signed off (nothing waits, production moved, retraining paused)."""


def record_passed(runtime, summary: dict, *, by: str) -> RetrainRun:
    """A finished run for a `tuesday train` whose candidate passed the gate and waits for sign-off."""
    metrics = {"candidate": headline_metrics(summary.get("metrics") or {}),
               "production": headline_metrics(summary.get("production_metrics") or None),
               "family": summary.get("family"), "choice": summary.get("choice"),
               "calibration": summary.get("calibration"), "shadow": summary.get("shadow")}
    now = utc_now()
    with runtime.sessions() as session:
        run = RetrainRun(task=runtime.task.name, requested_by=by, trigger="train", status=PASSED,
                         candidate_version=summary["version"], production_before=summary.get("production"),
                         why=summary["why"], metrics=json.dumps(metrics), snapshot=summary.get("snapshot"),
                         started_at=now, finished_at=now)
        session.add(run)
        session.commit()
        return run


def waiting_run(sessions, version: str) -> RetrainRun:
    """The newest run whose candidate `version` waits for sign-off."""
    with sessions() as session:
        run = session.scalar(select(RetrainRun).where(RetrainRun.candidate_version == version)
                             .order_by(RetrainRun.id.desc()).limit(1))
    if run is None or run.status != PASSED:
        state = "was built outside a retrain run" if run is None else f"is in run {run.id}, {run.status}"
        raise SignOffRefused(f"{version} does not wait for sign-off ({state}); only a candidate that passed "
                             "the gate with TUESDAY_PROMOTION_SIGNOFF on does")
    return run


def _close_as_kept(sessions, run_id: int, why: str) -> None:
    with sessions() as session:
        session.execute(update(RetrainRun).where(RetrainRun.id == run_id, RetrainRun.status == PASSED)
                        .values(status="kept", why=why))
        session.commit()


def approve(runtime, run_id: int, *, by: str, queues=None) -> dict:
    """Sign off run `run_id`'s candidate and put it in production; returns the run as a dict.

    by: who signs, as the audit log names people ("slack:U123", "cli:ana"). Checking that they
    may (a manager) is the caller's part. queues: to suggest tickets that waited for a first model.
    """
    sessions = runtime.sessions
    run = get_run(sessions, run_id)
    if run is None:
        raise SignOffRefused(f"no retrain run {run_id}")
    runtime = runtime.for_task(run.task)  # the run's task: its production, its shadow
    if run.signed_off_by:
        raise SignOffRefused(f"run {run.id} was signed off by {run.signed_off_by} at "
                             f"{as_utc(run.signed_off_at):%Y-%m-%d %H:%M} UTC already")
    if run.status != PASSED:
        raise SignOffRefused(f"run {run.id} is {run.status}: only a candidate that passed the gate and waits "
                             "for sign-off can be approved")

    pending = pending_reason(runtime, run)  # TUESDAY_SHADOW_MIN_TICKETS: the manager signs after the shadow
    if pending is not None:
        raise SignOffRefused(pending)
    flag = pause_state(sessions)
    if flag is not None:
        raise SignOffRefused(f"retraining is paused (by {flag.set_by}): production does not change until "
                             "`/tuesday resume`; the candidate keeps waiting")
    version, compared = run.candidate_version, run.production_before
    try:
        runtime.production.switch(version, by=by, reason=f"signed off by {by} after the gate: {run.why}",
                                  expect=compared)
    except PointerMoved:
        live = runtime.production.name()
        if live != version:
            why = (f"not promoted: production is {live or 'none'} now, not {compared or 'none'} that {version} was "
                   "compared with; a new retrain compares again")
            _close_as_kept(sessions, run.id, why)
            raise SignOffRefused(why) from None
        # An earlier approval switched production and stopped before recording it: finish its record.
    at = utc_now()
    with sessions() as session:
        done = session.execute(update(RetrainRun).where(RetrainRun.id == run.id, RetrainRun.status == PASSED)
                               .values(status="promoted", signed_off_by=by, signed_off_at=at))
        if done.rowcount != 1:
            session.rollback()
            raise SignOffRefused(f"run {run.id} was signed off by someone else a moment ago")
        audit.record(session, by, ACTION, version, run=run.id, previous=compared, task=run.task)
        session.commit()
    note = {"version": version, "signed_off_by": by, "signed_off_at": at.isoformat(timespec="seconds"),
            "run": run.id, "compared_with": compared, "why": run.why}
    try:
        runtime.registry.add_paper(version, SIGNOFF, json.dumps(note, indent=2).encode("utf-8"))
    except ArtifactExists:
        pass  # a version is signed off once; the first note stands
    except ArtifactError as exc:
        # The SQL row holds the sign-off already (and the card reads it there too); production has switched.
        log.warning("run %s: sign-off of %s not written next to the version: %s", run.id, version, exc)
    if compared is None and queues is not None:
        log.info("first model signed off: %d waiting ticket(s) queued", sweep_tickets(runtime, queues, grace=None))
    return get_run(sessions, run.id).to_dict()


def signoff_of(runtime, version: str) -> dict | None:
    """Who signed off `version` and when ({signed_off_by, signed_off_at, run, ...}), or None."""
    data = runtime.registry.paper(version, SIGNOFF)
    if data is not None:
        return json.loads(data)
    with runtime.sessions() as session:
        run = session.scalar(select(RetrainRun).where(RetrainRun.candidate_version == version,
                                                      RetrainRun.signed_off_by.is_not(None)))
        if run is None:
            return None
        return {"version": version, "signed_off_by": run.signed_off_by, "run": run.id,
                "signed_off_at": as_utc(run.signed_off_at).isoformat(timespec="seconds")}


def signoff_line(note: dict | None) -> str:
    if note is None:
        return "Not signed off (promoted by the gate alone, or not promoted)."
    return (f"Signed off by {note['signed_off_by']} at {note['signed_off_at'][:16].replace('T', ' ')} UTC"
            + (f" (retrain run {note['run']})" if note.get("run") else "") + ".")
