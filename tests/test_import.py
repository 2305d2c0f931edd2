import json

from bot.store.base import make_session_factory
from bot.store.examples import all_examples
from bot.store.importer import import_file


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_bad_rows_are_named_by_line_and_good_rows_kept(tmp_path, task, store_url):
    sessions = make_session_factory(store_url)
    path = _write(tmp_path / "rows.jsonl", [
        {"id": "a", "text": "where is my claim", "label": "claim_status"},
        {"id": "b", "text": "", "label": "claim_status"},
        {"id": "c", "text": "refund me", "label": "refunds"},
        "{not json",
        {"id": "d", "text": "need my dec page", "label": "document_request", "reason": "Dec page is a document."},
    ])
    report = import_file(path, task, sessions)
    assert report.added == 2
    assert [line for line, _ in report.errors] == [2, 3, 4]
    assert "empty text" in report.errors[0][1]
    assert "unknown label 'refunds'" in report.errors[1][1]
    with sessions() as s:
        stored = {e.external_id: e for e in all_examples(s)}
    assert set(stored) == {"a", "d"}
    assert stored["d"].reason == "Dec page is a document."


def test_importing_twice_does_not_duplicate(tmp_path, task, store_url):
    sessions = make_session_factory(store_url)
    path = _write(tmp_path / "rows.jsonl", [{"text": "add my son as a driver", "label": "policy_change"},
                                           {"id": "7", "text": "bill is wrong", "label": "billing_dispute"}])
    first = import_file(path, task, sessions)
    second = import_file(path, task, sessions)
    assert (first.added, first.duplicates) == (2, 0)
    assert (second.added, second.duplicates) == (0, 2)
    with sessions() as s:
        assert len(all_examples(s)) == 2


def test_csv_import_masks_pii_before_storing(tmp_path, task):
    sessions = make_session_factory(f"sqlite:///{tmp_path / 's.db'}")
    path = tmp_path / "rows.csv"
    path.write_text('text,label\n"call me at 555-013-2299 or j.doe@example.com",claim_status\n,claim_status\n')
    report = import_file(path, task, sessions)
    assert report.added == 1 and report.errors == [(3, "empty text")]
    with sessions() as s:
        assert all_examples(s)[0].text == "call me at [PHONE] or [EMAIL]"


def test_demo_examples_all_import(tmp_path, task):
    from inference.task import demo_examples_path

    sessions = make_session_factory(f"sqlite:///{tmp_path / 's.db'}")
    report = import_file(demo_examples_path(), task, sessions, source="demo")
    assert report.errors == [] and report.added >= 600
