from inference.splits import in_holdout, normalise


def test_the_same_text_is_always_on_the_same_side(demo_rows):
    for row in demo_rows[:200]:
        text = row["text"]
        variants = [text, text.upper(), f"  {text}\n", text.replace(" ", "  ")]
        assert len({in_holdout(v) for v in variants}) == 1


def test_about_the_fraction_is_held_out(demo_rows):
    share = sum(in_holdout(r["text"]) for r in demo_rows) / len(demo_rows)
    assert 0.15 < share < 0.25
    assert not any(in_holdout(r["text"], 0.0) for r in demo_rows[:50])


def test_normalise_folds_case_width_and_spaces():
    assert normalise("Claim\u00a0 #12\n") == normalise("ＣＬＡＩＭ #12") == "claim #12"
