"""Names from many cultures in the openings and sign-offs tickets use (inference/pii_people.py), measured per context
(bench.pii.score_names) on the tuned set and on the set written after tuning."""

import pytest

from bench.pii import HOLDOUT, NAME_CONTEXTS, load, name_context, score_names
from inference.pii import mask_fields, mask_pii
from inference.pii_people import NamePatternRecognizer

# Common names of South Asian, East Asian, African, Arabic, Hispanic, Slavic and other origins, as customers
# write them (with their letters: Łukasz, Wiśniewska, Nguyễn, O'Brien, Al-Farsi, Min-jun, de la Cruz).
NAMES = ["Rahul Sharma", "Priya Patel", "Amit Kumar", "Sanjay Gupta", "Lakshmi Narayanan", "Mohammed Rafiq",
         "Nguyễn Văn An", "Wang Fang", "Kim Min-jun", "Haruto Sato", "Chinedu Okeke", "Thandiwe Nkosi",
         "Abebe Bekele", "Omar Al-Farsi", "Layla Haddad", "Juan de la Cruz", "María José García",
         "Łukasz Wiśniewski", "Ondřej Dvořák", "Oksana Shevchenko", "Siobhan O'Brien", "Mehmet Yılmaz", "Aroha Ngata"]
CONTEXTS = {
    "this is": "Hello, this is {} from Acme Logistics. Our invoice is wrong.",
    "this is, end": "Hi, this is {}.",
    "my name is": "My name is {} and my order 661290 was charged twice.",
    "regards": "Please close ticket 70012.\nRegards,\n{}",
    "regards, inline": "Please close ticket 70012. Kind regards, {}",
    "thanks": "Can you resend the receipt? Thanks, {}",
    "thanks, own line": "Thanks a lot,\n{}\nAccounts Payable",
    "dash": "The export is broken since 2.14.3.\n- {}",
    "here": "Hi, {} here, any news on claim CLM-4410?",
}


@pytest.mark.parametrize("context", CONTEXTS)
def test_every_name_is_masked_in_every_context_by_the_patterns_alone(context):
    """The patterns, without the model: what the model misses in a context (it kept "Sanjay" in "Hello, this is
    Sanjay from ...", docs/pii.md), the pattern still finds."""
    recognizer = NamePatternRecognizer()
    missed = []
    for name in NAMES:
        text = CONTEXTS[context].format(name)
        found = {text[r.start:r.end] for r in recognizer.analyze(text, ["PERSON"])}
        if name not in found:
            missed.append((name, sorted(found)))
    assert missed == []


@pytest.mark.parametrize("context", ["this is", "my name is", "regards", "thanks", "dash"])
def test_the_full_detector_masks_them(context):
    for name in NAMES[::3]:
        masked = mask_pii(CONTEXTS[context].format(name))
        assert name not in masked and "[PERSON]" in masked, masked


@pytest.mark.parametrize("text", [
    "Hello, this is Microsoft Teams again: calls drop after 10 minutes.",
    "Hello, this is still broken after 4.8.2.",
    "Thanks, Apple Pay works now.",
    "Regards,\nThe Billing Team",
    "Regards,\nAccounts Payable",
    "Thanks,\nIT Helpdesk",
    "Steps:\n- Open Settings\n- Click Export",
    "Please check the attachment.\n- Sent from my iPhone",
    "Hi, this is Ticket 70012 again.",
    "Best regards,\nCustomer Success Team",
    "The username is Report.",
    "Thank you for your support. Sincerely,\n[Your Name]",
    "Immediate Attention Needed: Multiple Devices Down",
    "Hospital System Security Best Practices\n\nCustomer Support,",
    "integration tips and best practices. Additionally, I would like a demo.",
])
def test_teams_products_and_lists_are_not_names(text):
    assert NamePatternRecognizer().analyze(text, ["PERSON"]) == []


def test_a_name_from_a_sign_off_is_masked_in_the_subject_too():
    subject, body = mask_fields("Refund for Oluwaseun Adeyemi",
                                "Please refund order 90018.\nThanks,\nOluwaseun Adeyemi")
    assert "Oluwaseun" not in subject + body


def test_two_sign_offs_in_a_row_both_count():
    text = "Thank you! Cheers,\nBui Thi Hoa"
    assert "Bui Thi Hoa" in {text[r.start:r.end] for r in NamePatternRecognizer().analyze(text, ["PERSON"])}


def test_contexts_are_read_from_the_words_before_a_name():
    assert name_context("Hello, this is Ann Lee", 15) == "this is NAME"
    assert name_context("Thanks a lot,\nAnn", 14) == "thanks, NAME"
    assert name_context("Thank u\n- Ann", 10) == "- NAME"
    assert name_context("Kind regards, Ann", 14) == "regards, NAME"
    assert name_context("my wife Ann", 8) == "elsewhere"


@pytest.mark.parametrize("path", ["tickets.txt", "held-out"])
def test_names_are_measured_in_every_context(path):
    """Both sets hold names in each context (the held-out set at least eight per context, of many origins), and
    recall per context is at least 95 % on the tuned set and 85 % on the held-out set (docs/pii.md has the tables;
    one miss in ten there: a lower-case "ravi" after "thx,")."""
    scores = score_names(load() if path == "tickets.txt" else load(HOLDOUT))
    for context, _ in NAME_CONTEXTS:
        s = scores[context]
        assert s.spans >= (5 if path == "tickets.txt" else 8), context
        assert s.recall >= (0.95 if path == "tickets.txt" else 0.85), f"{context}: missed {s.missed}"
