"""The masking engine: detectors, evasions, styles, and streams that agree with whole texts."""

from __future__ import annotations

import dataclasses
import random
import threading

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geogate.config import BUILTIN_ENTITIES, CustomEntity
from geogate.dlp import DataBlocked, Engine, MaskingError, PatternError
from geogate.dlp.detectors import (
    _NATIONAL_REGIONS,
    _SECRET_TOKENS,
    BUILTIN,
    _known,
    _valid_for,
    _valid_international,
)
from geogate.dlp.masker import CEILING, Chain, Masker, Restorer
from geogate.dlp.vault import Vault, Vaults

ALL = Engine.build(BUILTIN_ENTITIES)


def fullwidth(text: str) -> str:
    """The full-width forms (U+FF10...) of ASCII digits and hyphens."""
    return "".join(chr(ord(char) + 0xFEE0) if char != " " else char for char in text)


def found(text: str, engine: Engine = ALL) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in engine.find(text)]


def test_every_contract_entity_has_a_detector() -> None:
    assert set(BUILTIN) == BUILTIN_ENTITIES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SSN 123-45-6789.", [("us_ssn", "123-45-6789")]),
        ("ssn: 123 45 6789", [("us_ssn", "123 45 6789")]),
        ("SSN: 123456789", [("us_ssn", "123456789")]),
        ("ITIN 912-70-1234", [("us_itin", "912-70-1234")]),
        ("card 4111 1111 1111 1111 exp", [("credit_card", "4111 1111 1111 1111")]),
        ("amex 3782-822463-10005", [("credit_card", "3782-822463-10005")]),
        ("pay to DE89 3704 0044 0532 0130 00 today", [("iban", "DE89 3704 0044 0532 0130 00")]),
        ("GB82WEST12345698765432", [("iban", "GB82WEST12345698765432")]),
        ("NI number AB 12 34 56 C", [("uk_nino", "AB 12 34 56 C")]),
        ("write to jane.doe+x@mail.example.co.uk.", [("email", "jane.doe+x@mail.example.co.uk")]),
        ("call +1 415-555-0132 now", [("phone", "+1 415-555-0132")]),
        ("call (415) 555-0132 now", [("phone", "(415) 555-0132")]),
        ("Tel: 020 7946 0958", [("phone", "020 7946 0958")]),
        ("+49 30 901820", [("phone", "+49 30 901820")]),
        ("+44 (0)20 7946 0958", [("phone", "+44 (0)20 7946 0958")]),
        ("Roma +39 06 6982 1234", [("phone", "+39 06 6982 1234")]),
        ("Paris +33 1 42 68 53 00.", [("phone", "+33 1 42 68 53 00")]),
        ("host 192.168.10.20 up", [("ip_address", "192.168.10.20")]),
        ("v6 2001:db8::8a2e:370:7334 up", [("ip_address", "2001:db8::8a2e:370:7334")]),
        ("id AKIAIOSFODNN7EXAMPLE", [("secret", "AKIAIOSFODNN7EXAMPLE")]),
        (
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            [("secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")],
        ),
        ("token: ghp_" + "a1B2" * 9, [("secret", "ghp_" + "a1B2" * 9)]),
        ("slack xoxb-1234567890-abcdefghij", [("secret", "xoxb-1234567890-abcdefghij")]),
        ("sk-ant-api03-" + "Ab9_" * 20, [("secret", "sk-ant-api03-" + "Ab9_" * 20)]),
        ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", [("secret", "sk_live_4eC39HqLyjWDarjtT1zdp7dc")]),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFU",
            [
                (
                    "secret",
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFU",
                )
            ],
        ),
        ('{"api_key": "q8Zr2LmP0aZ7tR4vB8nX"}', [("secret", "q8Zr2LmP0aZ7tR4vB8nX")]),
    ],
)
def test_detectors_find_valid_values(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "SSN 000-45-6789, 666-45-6789, 123-00-6789, 123-45-0000",  # SSA never issues these
        "order 123456789 shipped",  # nine digits without saying SSN
        "card 4111 1111 1111 1112",  # fails Luhn
        "card 1234 5678 9012 3456",  # no issuer uses this range
        "IBAN DE89 3704 0044 0532 0130 01",  # wrong check digits
        "NINO BG 12 34 56 C and QQ 12 34 56 C",  # prefixes never issued
        "on 2024-05-12 at 12:30:45, v1.2.3, build 10.0.19045, ORD-2024-000123",
        "ticket #5551234567 and id 4155550100",  # bare ids are not phone numbers
        "uuid 123e4567-e89b-12d3-a456-426614174000 sha 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "versions 1.2.3.4.5 and 10.1.2.3.4",
        "password=aaaaaaaaaaaaaaaaaaaa",  # low entropy
        "123-45-6789-0001 is one part number",
        "1-123-45-6789",
    ],
)
def test_near_misses_are_left_alone(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "SSN " + fullwidth("123-45-6789"),  # full-width digits and hyphen
        "SSN 123\u200d-45-6789",  # zero-width joiner
        "SSN 1\u200b2\u200c3-45-6789",  # zero-width space and non-joiner
        "SSN 123\u00a045\u00a06789",  # no-break spaces
        "SSN 123\u201145\u20136789",  # non-breaking hyphen, en dash
        "SSN 123\u221245\u22126789",  # minus sign
        "SSN 123-4\u00ad5-6789",  # soft hyphen
        "SSN ١٢٣-٤٥-٦٧٨٩",  # Arabic-Indic digits
        "SSN 123\u2060-45-6789",  # word joiner
    ],
)
def test_evasions_are_undone_and_the_original_is_masked(text: str) -> None:
    findings = ALL.find(text)
    assert [f.entity for f in findings] == ["us_ssn"]
    assert findings[0].start == 4 and findings[0].end == len(text)
    assert Masker(ALL).mask(text) == "SSN [US_SSN]"


def test_a_value_split_across_two_fields_of_one_message_is_masked() -> None:
    masker = Masker(ALL)
    assert masker.apply(["my ssn is 123-45", "-6789 thanks", " bye"]) == [
        "my ssn is [US_SSN]",
        " thanks",
        " bye",
    ]
    assert masker.counts == {"us_ssn": 1}


def test_styles() -> None:
    text = "SSN 123-45-6789 card 4111111111111111 mail jane@example.com ip 10.1.2.3"
    assert Masker(ALL, "redact").mask(text) == (
        "SSN [US_SSN] card [CREDIT_CARD] mail [EMAIL] ip [IP_ADDRESS]"
    )
    assert Masker(ALL, "partial").mask(text) == (
        "SSN ***-**-6789 card ************1111 mail j***@example.com ip 10.*.*.*"
    )
    hashed = Masker(ALL, "hash", key=b"k1").mask("SSN 123-45-6789 and 123 45 6789")
    first, second = hashed.split(" and ")
    assert first.startswith("SSN [US_SSN:") and first[4:] == second  # one SSN, one hash
    assert Masker(ALL, "hash", key=b"k1").mask(text) == Masker(ALL, "hash", key=b"k1").mask(text)
    assert Masker(ALL, "hash", key=b"k2").mask(text) != Masker(ALL, "hash", key=b"k1").mask(text)


def test_tokenize_round_trip_and_sessions() -> None:
    vaults = Vaults(b"key")
    vault = vaults.session("alice\ns1")
    masked = Masker(ALL, "tokenize", vault=vault).mask("SSN 123-45-6789, card 4111111111111111")
    assert "123-45-6789" not in masked and "4111" not in masked
    placeholder = masked.split()[1].rstrip(",")
    reply = f"Noted {placeholder}; I will not repeat [US_SSN_0000000000]."
    assert Restorer(vault).apply([reply]) == [
        "Noted 123-45-6789; I will not repeat [US_SSN_0000000000]."
    ]
    # the same value in the same session gets the same placeholder on any worker
    again = Masker(ALL, "tokenize", vault=Vaults(b"key").session("alice\ns1")).mask(
        "SSN 123 45 6789"
    )
    assert again == f"SSN {placeholder}"
    other = Masker(ALL, "tokenize", vault=Vaults(b"key").session("bob\ns1")).mask("SSN 123-45-6789")
    assert other != f"SSN {placeholder}"
    assert Restorer(vaults.session("bob\ns1")).apply([reply])[0] == reply  # not bob's value


def test_vaults_expire() -> None:
    vaults = Vaults(b"key", ttl=0.0)
    vault = vaults.session("a")
    vault.placeholder("us_ssn", "123456789", "123-45-6789")
    assert vaults.session("b") is not vault
    assert vaults.session("a").original("[US_SSN_x]") is None
    assert len(vaults._vaults) == 1


def test_on_detect_block_refuses_whole_texts_and_streams() -> None:
    masker = Masker(ALL, block=True)
    assert masker.mask("nothing here") == "nothing here"
    with pytest.raises(DataBlocked, match="us_ssn"):
        masker.mask("SSN 123-45-6789")
    stream = masker.stream()
    with pytest.raises(DataBlocked):
        for char in "SSN 123-45-6789 and more":
            stream.feed(char)
        stream.finish()


def test_open_private_key_is_held_up_to_the_ceiling_then_refused() -> None:
    stream = Masker(ALL).stream()
    out = stream.feed("before -----BEGIN RSA PRIVATE KEY-----\n")
    assert out == "before "
    with pytest.raises(MaskingError, match="KiB"):
        for _ in range(CEILING // 1000 + 2):
            assert stream.feed("A" * 999 + "\n") == ""


def test_unterminated_private_key_is_masked_to_the_end() -> None:
    text = "x -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    assert Masker(ALL).mask(text) == "x [SECRET]"
    assert stream_masked(Masker(ALL), text, [5, 10, 3]) == "x [SECRET]"


def test_custom_patterns_and_words() -> None:
    custom = {
        "employee_id": CustomEntity(pattern="EMP-[0-9]{6}"),
        "project": CustomEntity(words=["Blue Falcon", "Nightjar"]),
    }
    engine = Engine.build({"employee_id", "project", "us_ssn"}, custom)
    assert found("EMP-123456 on blue falcon, not Nightjars", engine) == [
        ("employee_id", "EMP-123456"),
        ("project", "blue falcon"),
    ]
    with pytest.raises(PatternError, match="any length"):
        Engine.build({"x"}, {"x": CustomEntity(pattern="EMP-[0-9]+")})
    with pytest.raises(PatternError, match="does not compile"):
        Engine.build({"y"}, {"y": CustomEntity(pattern="(?<=a)b")})


def test_a_failing_validator_refuses_rather_than_passing_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(text: str, start: int, end: int) -> list[tuple[int, int]]:
        raise RuntimeError("bug")

    engine = Engine([dataclasses.replace(BUILTIN["us_ssn"], spans=broken)])
    with pytest.raises(MaskingError, match="refused"):
        Masker(engine).mask("SSN 123-45-6789")


# --- streams ------------------------------------------------------------------------------

SAMPLES = [
    "my ssn is 123-45-6789 and card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00 ok",
    "mail john.doe@example.co.uk or +1 415-555-0132 or (415) 555-0132, ip 192.168.1.20, ::1",
    "ITIN 912-70-1234, AB 12 34 56 C, AKIAIOSFODNN7EXAMPLE, api_key='q8Zr2LmP0aZ7tR4vB8nX'.",
    "SSN: 123456789 4111 1111 1111 1111.5 4111111111111111 x 123-45-6789-1 SSN "
    + fullwidth("123-45-6789"),
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY----- and 123\u200d-45-6789",
    "prose with nothing to mask at all, just words, numbers like 42 and 2024-05-12 and v1.2.3",
]


def stream_masked(masker: Masker, text: str, sizes: list[int]) -> str:
    stream = masker.stream()
    out: list[str] = []
    position = 0
    step = 0
    while position < len(text):
        size = sizes[step % len(sizes)]
        out.append(stream.feed(text[position : position + size]))
        position += size
        step += 1
    out.append(stream.finish())
    return "".join(out)


@pytest.mark.parametrize("text", SAMPLES)
def test_stream_equals_whole_text_at_every_split_and_one_char_at_a_time(text: str) -> None:
    for style in ("redact", "partial", "hash"):
        whole = Masker(ALL, style, key=b"k").mask(text)
        assert stream_masked(Masker(ALL, style, key=b"k"), text, [1]) == whole
        for split in range(1, len(text)):
            stream = Masker(ALL, style, key=b"k").stream()
            assert stream.feed(text[:split]) + stream.feed(text[split:]) + stream.finish() == whole


def test_stream_holds_back_only_what_could_still_be_a_value() -> None:
    stream = Masker(ALL).stream()
    assert stream.feed("Hello there, how are") == "Hello there, how "  # "are" may start an email
    assert stream.feed(" you? Your SSN is 123-45") == "are you? Your SSN is "
    assert stream.feed("-6789 and") == "[US_SSN] "
    assert stream.finish() == "and"


def test_stream_counts_like_the_whole_text() -> None:
    masker = Masker(ALL)
    stream_masked(masker, SAMPLES[0], [3])
    assert masker.counts == {"us_ssn": 1, "credit_card": 1, "iban": 1}


_FRAGMENTS = [
    "123-45-6789",
    fullwidth("4111 1111 1111 1111"),
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "jane@example.com",
    "+1 415-555-0132",
    "10.0.0.1",
    "AKIAIOSFODNN7EXAMPLE",
    "key=q8Zr2LmP0aZ7tR4vB8nX",
    "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
    "AB 12 34 56 C",
    "SSN:",
    " ",
    "-",
    ".",
    "\u200d",
    "\u00a0",
    "\n",
    "word",
    "7",
    "45",
    "@",
    "é",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=14),
    st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=8),
    st.sampled_from(["redact", "partial", "hash"]),
)
def test_property_streamed_output_equals_masked_whole_text(
    parts: list[str], sizes: list[int], style: str
) -> None:
    text = "".join(parts)
    whole = Masker(ALL, style, key=b"k").mask(text)  # type: ignore[arg-type]
    assert stream_masked(Masker(ALL, style, key=b"k"), text, sizes) == whole  # type: ignore[arg-type]


def test_chained_mask_then_restore_streams_like_whole_text() -> None:
    vault = Vault(b"key", "s")
    placeholder = vault.placeholder("us_ssn", "123456789", "123-45-6789")
    text = f"Your SSN {placeholder} is on file; theirs is 219-09-9998 or 078-05-1121."
    transform = Chain(Masker(ALL), Restorer(vault))
    whole = transform.apply([text])[0]
    assert whole.startswith("Your SSN 123-45-6789 is on file")
    rng = random.Random(7)
    for _ in range(50):
        stream = transform.stream()
        out, position = [], 0
        while position < len(text):
            size = rng.randint(1, 9)
            out.append(stream.feed(text[position : position + size]))
            position += size
        out.append(stream.finish())
        assert "".join(out) == whole


def test_one_engine_scans_from_several_threads_at_once() -> None:
    """Hyperscan's scratch space serves one scan at a time; each thread gets its own."""
    text = "SSN 123-45-6789 " * 2000
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert len(ALL.find(text)) == 2000
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_phone_validity_agrees_with_libphonenumber() -> None:
    """The compiled metadata check answers as `phonenumbers.is_valid_number_for_region`."""
    rng = random.Random(11)
    for _ in range(400):
        national = rng.choice("123456789") + "".join(
            rng.choices("0123456789", k=rng.randint(5, 11))
        )
        for region, code in _NATIONAL_REGIONS:
            digits = "0" + national if region == "IT" else national
            number = phonenumbers.PhoneNumber(
                country_code=code,
                national_number=int(digits),
                italian_leading_zero=True if region == "IT" else None,
            )
            assert _valid_for(code, region, digits) == phonenumbers.is_valid_number_for_region(
                number, region
            ), (region, digits)
        nanp = rng.choice("23456789") + "".join(rng.choices("0123456789", k=9))
        expected = phonenumbers.is_valid_number(phonenumbers.PhoneNumber(1, int(nanp)))
        assert _known(1, nanp) == expected, nanp


@pytest.mark.parametrize(
    "token",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2" * 9,
        "github_pat_" + "A1b2_" * 12,
        "xoxb-1234567890-abcdefABCDEF",
        "sk-proj-" + "aB3" * 10,
        "sk-ant-api03-" + "xY9_" * 10,
        "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_one_secret_token_pattern_matches_a_token(token: str) -> None:
    """The engine matches the token patterns as one alternation, which is only right while
    no two of them can match at the same place (each begins with its own literal)."""
    matching = [pattern for pattern in _SECRET_TOKENS if pattern.match(token)]
    assert len(matching) == 1, matching
    assert found(f"use {token} now") == [("secret", token)]


def test_international_numbers_agree_with_libphonenumbers_parser() -> None:
    """`+CC national` is split without parsing, a trunk `(0)` or a leading 0 included, and
    answers as `phonenumbers.parse` and `is_valid_number` do, for every region's example
    numbers, written four ways, and for near-misses of them."""
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            nsn = phonenumbers.national_significant_number(example)
            code = example.country_code
            for national in (nsn, nsn[:-1] + str((int(nsn[-1]) + 1) % 10), nsn[:-2] + "07"):
                for value in (
                    f"+{code} {national}",
                    f"+{code} (0){national}",
                    f"+{code}(0) {national}",
                    f"+{code} 0{national}",
                ):
                    try:
                        expected = phonenumbers.is_valid_number(phonenumbers.parse(value, None))
                    except phonenumbers.NumberParseException:
                        expected = False
                    digits = "".join(char for char in value if char.isdigit())
                    assert _valid_international(value, digits) == expected, (region, value)
                    checked += 1
    assert checked > 5000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail j\u0430ne@ex\u0430mple.com", "mail [EMAIL]"),  # Cyrillic a
        ("id \u0410KIAIOSFODNN7EXAMPLE", "id [SECRET]"),  # Cyrillic A
        ("id \u0391KIAIOSFODNN7EXAMPLE", "id [SECRET]"),  # Greek Alpha
        ("IBAN D\u0415\u0038\u0039 3704 0044 0532 0130 00", "IBAN [IBAN]"),  # Cyrillic E
    ],
)
def test_cyrillic_and_greek_look_alikes_are_read_as_latin(text: str, expected: str) -> None:
    assert Masker(ALL).mask(text) == expected


def test_cyrillic_and_greek_prose_is_left_alone() -> None:
    text = "\u041c\u043e\u0441\u043a\u0432\u0430 \u0438 \u0391\u03b8\u03ae\u03bd\u03b1: \u041e\u041a, 12 \u0440\u0443\u0431."
    assert Masker(ALL).mask(text) == text
