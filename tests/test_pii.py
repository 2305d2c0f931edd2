from bot.pii import mask_pii


def test_masks_emails_phones_cards_and_account_numbers():
    text = ("Jo here, j.doe@example.com, (555) 013-2299 or 555-0142, card 4111 1111 1111 1111, "
            "policy HM-204-88123, acct 12345678")
    masked = mask_pii(text)
    for raw in ("j.doe@example.com", "013-2299", "555-0142", "4111", "88123", "12345678"):
        assert raw not in masked
    assert "[EMAIL]" in masked and "[PHONE]" in masked and "[CARD]" in masked and "[ACCOUNT]" in masked


def test_leaves_ordinary_numbers_alone():
    text = "2 cars, 2019 Civic, $1,250.00 deductible, claim CLM-7781 on 03/04/2024"
    assert mask_pii(text) == text
