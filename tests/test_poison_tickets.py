"""A ticket whose suggest job fails every time ends `failed` instead of being queued forever: counted in SQL, left
out by the sweeper, shown by status, /metrics and an alert, queued again by `tuesday tickets --retry`. Failures that
are not the ticket's (Slack down) do not count. Real SQL, Redis, RQ and the tiny model; Slack faked at HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError

from bot.cli.main import main
from bot.lifecycle.status import gather_status, status_text
from bot.monitor import rules
from bot.monitor.alerts import FAILED_TICKETS
from bot.monitor.exporter import metrics_registry, scrape
from bot.runtime import slack_client
from bot.store.base import make_session_factory, utc_now
from bot.store.tickets import Ticket, add_ticket, unsuggested_tickets
from bot.worker import suggest
from bot.worker.jobs import worker as tuesday_worker
from bot.worker.suggest import Suggester, suggest_ticket
from tests.slash import env, fake_slack  # noqa: F401  (fixtures)
from tests.test_shadow import parts  # noqa: F401

pytestmark = pytest.mark.slow


class Poisoned:
    """The served model, except on one ticket whose text makes it fail (as a model or a bug can, every time)."""

    def __init__(self, real):
        self.real = real

    def predict(self, text):
        if "POISON" in text:
            raise ValueError("cannot read this ticket")
        return self.real.predict(text)

    def close(self):
        self.real.close()


def _ticket(runtime, ticket_id: int) -> Ticket:
    with runtime.sessions() as session:
        return session.get(Ticket, ticket_id)


def test_a_poison_ticket_ends_failed_is_shown_and_a_retry_queues_it(parts, fake_slack, monkeypatch):  # noqa: F811
    runtime, queues = parts.runtime, parts.queues
    runtime.settings.suggest_max_attempts = 3
    suggester = Suggester(runtime, slack_client(parts.settings))
    suggester.predictors.predictor = Poisoned(suggester.predictors.get())
    monkeypatch.setattr(suggest, "worker_suggester", lambda: suggester)  # the worker process's suggester
    poison = add_ticket(runtime.sessions, source="generic", external_id="p", text="POISON ticket")[0].id
    fine = add_ticket(runtime.sessions, source="generic", external_id="f", text="Where is my claim?")[0].id

    queues.enqueue_suggest(poison)
    tuesday_worker(queues, ["suggest"]).work(burst=True)  # a real worker runs it and it fails
    assert (_ticket(runtime, poison).attempts, _ticket(runtime, poison).failed_at) == (1, None)
    fake_slack.fail_next = ["service_unavailable"]  # Slack down: not the ticket's fault, not counted
    with pytest.raises(SlackApiError):
        suggest_ticket(fine)
    assert _ticket(runtime, fine).attempts == 0 and suggest_ticket(fine)["slack_ts"]
    for _ in range(2):  # its second and third failure
        with pytest.raises(ValueError):
            suggest_ticket(poison)
    given_up = _ticket(runtime, poison)
    assert (given_up.attempts, given_up.last_error) == (3, "ValueError") and given_up.failed_at is not None
    assert unsuggested_tickets(runtime.sessions, posts=True, task="topic") == []  # the sweeper leaves it alone

    assert "tickets given up on: 1" in status_text(gather_status(runtime, queues))
    families = {f.name: f for f in text_string_to_metric_families(scrape(metrics_registry(runtime, queues)).decode())}
    assert families["tuesday_tickets_failed"].samples[0].value == 1
    [alert] = [f for f in rules.evaluate(runtime, utc_now()) if f.kind == FAILED_TICKETS]
    assert alert.message.startswith("1 ticket given up on in the last 24 h") and "tuesday tickets" in alert.message
    assert not [f for f in rules.evaluate(runtime, utc_now() + timedelta(days=2)) if f.kind == FAILED_TICKETS]

    listed = CliRunner().invoke(main, ["tickets", "--failed"], catch_exceptions=False).output
    assert f"#{poison} generic:p  3 attempts, last ValueError" in listed
    CliRunner().invoke(main, ["tickets", "--retry", str(poison)], catch_exceptions=False)
    again = _ticket(runtime, poison)
    assert (again.attempts, again.failed_at) == (0, None) and queues.suggest.job_ids == [f"suggest-{poison}"]
    suggester.close()


def test_the_sweeper_takes_tickets_that_failed_least_first(tmp_path):
    sessions = make_session_factory(f"sqlite:///{tmp_path / 'store.db'}")
    ids = [add_ticket(sessions, source="generic", external_id=str(i), text=f"ticket {i}")[0].id for i in range(3)]
    with sessions() as session:
        session.get(Ticket, ids[0]).attempts = 2  # the oldest keeps failing
        session.commit()
    assert unsuggested_tickets(sessions, posts=True, limit=2) == ids[1:]  # it no longer starves the later ones
    assert unsuggested_tickets(sessions, posts=True) == ids[1:] + ids[:1]


def test_retrying_a_ticket_that_did_not_fail_says_so(tmp_path):
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "tickets", "--retry", "999"])
    assert result.exit_code == 1 and "not failed tickets (nothing done): 999" in result.output
