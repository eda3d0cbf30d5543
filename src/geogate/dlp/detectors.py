"""The built-in entities: a coarse pattern, a validator, and what a match can be made of.

A detector's `pattern` (hyperscan syntax, run over normalised text) finds candidate regions
cheaply; `spans` then returns every span inside one region that really is the entity, checked
with a maintained validator (Luhn and IIN ranges, mod-97, SSA rules, libphonenumber). Each span
is judged by itself and a little context, never by what else was found, so the engine can
pick among them the same way for a whole text and for a stream.

`tail` matches, at the end of a text, anything that could still grow into a span of the
entity once more text arrives; a stream holds back only that much.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import phonenumbers
from stdnum import numdb

from geogate.dlp.checks import IPV4, iban_check_valid, luhn_valid, ssn_issued

Span = tuple[int, int]
SpanFinder = Callable[[str, int, int], Iterator[Span]]
"""(normalised text, region start, region end) -> spans of the entity in the region."""
TailFinder = Callable[[str], int | None]
"""Where, in a normalised text, a span that could still grow starts (None: nowhere)."""

CONTEXT = 64
"""Characters before a span that a detector may look at (keywords like `ssn:` or `key=`)."""


@dataclass(frozen=True, slots=True)
class Detector:
    entity: str
    patterns: tuple[str, ...]
    spans: SpanFinder
    tail: TailFinder
    canonical: Callable[[str], str] = str
    """The value as compared and hashed: `123 45 6789` and `123-45-6789` are one SSN."""
    merge: bool = False
    """`spans` looks for spans anywhere inside a region, so overlapping regions can be read as
    one (and each span validated once)."""
    prepare: Callable[[], object] = lambda: None
    """Builds what the first call would otherwise build (compiled metadata), at start."""


def tail_pattern(pattern: str, longest: int) -> TailFinder:
    """A tail finder from a regex matching any unfinished span at the end of the text.

    `re.search` tries every start, so this suits short structured tails (an IBAN's country
    code and check digits); long runs use `tail_run`, which is linear.
    """
    compiled = re.compile(f"(?:{pattern})\\Z")

    def tail(text: str) -> int | None:
        found = compiled.search(text, max(0, len(text) - longest))
        return found.start() if found else None

    return tail


def tail_run(alphabet: str, first: str, longest: int) -> TailFinder:
    """A tail finder for spans made of `alphabet` that begin with a character of `first`."""
    run = re.compile(f"[{alphabet}]*")
    starts = re.compile(f"[{first}]")
    members = frozenset(filter(re.compile(f"[{alphabet}]").fullmatch, map(chr, range(128))))
    """The alphabet's characters (normalised text is ASCII), to answer at once when the text
    does not end with one, as a stream's text mostly does not."""

    def tail(text: str) -> int | None:
        if not text or text[-1] not in members:
            return None
        window = text[-longest:]
        suffix = run.match(window[::-1]).end()  # type: ignore[union-attr]  # `*` always matches
        begin = starts.search(window, len(window) - suffix)
        return None if begin is None else len(text) - len(window) + begin.start()

    return tail


def _digits(value: str) -> str:
    return _NON_DIGITS.sub("", value)


_NON_DIGITS = re.compile(r"\D+")


def _groups(text: str, start: int, end: int) -> list[Span]:
    return [match.span() for match in _DIGIT_GROUP.finditer(text, start, end)]


_DIGIT_GROUP = re.compile(r"\d+")


def _detached(text: str, start: int, end: int) -> bool:
    """Not a piece of a longer number such as `1-123-45-6789-0` or `10.1.2.3.4`."""
    before = text[start - 2 : start] if start >= 2 else ""
    after = text[end : end + 2]
    return not (
        (len(before) == 2 and before[1] in "-./" and before[0].isdigit())
        or (start >= 1 and text[start - 1].isalnum())
        or (len(after) == 2 and after[0] in "-./" and after[1].isdigit())
        or (after[:1].isalnum())
    )


# --- payment cards -----------------------------------------------------------------------

_CARD_RANGES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("4", "4", (13, 16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),
    ("34", "34", (15,)),  # American Express
    ("37", "37", (15,)),
    ("6011", "6011", (16, 17, 18, 19)),  # Discover
    ("644", "649", (16, 17, 18, 19)),
    ("65", "65", (16, 17, 18, 19)),
    ("3528", "3589", (16, 17, 18, 19)),  # JCB
    ("300", "305", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("36", "36", (14, 15, 16, 17, 18, 19)),
    ("38", "39", (16, 17, 18, 19)),
    ("62", "62", (16, 17, 18, 19)),  # UnionPay
    ("50", "50", (13, 14, 15, 16, 17, 18, 19)),  # Maestro
    ("56", "58", (13, 14, 15, 16, 17, 18, 19)),
    ("67", "67", (13, 14, 15, 16, 17, 18, 19)),
    ("2200", "2204", (16, 17, 18, 19)),  # Mir
)


def _issued_card(number: str) -> bool:
    for size in (4, 3, 2, 1):
        lengths = _CARD_PREFIXES.get(number[:size])
        if lengths is not None and len(number) in lengths:
            return luhn_valid(number)
    return False


def _card_prefixes() -> dict[str, frozenset[int]]:
    """Every issuer prefix of `_CARD_RANGES` spelled out, for one lookup per prefix length."""
    prefixes: dict[str, frozenset[int]] = {}
    for low, high, lengths in _CARD_RANGES:
        for prefix in range(int(low), int(high) + 1):
            key = str(prefix)
            prefixes[key] = prefixes.get(key, frozenset()) | frozenset(lengths)
    return prefixes


_CARD_PREFIXES = _card_prefixes()


def _card_spans(text: str, start: int, end: int) -> Iterator[Span]:
    """Every run of groups inside the region that is an issued card number, joined by nothing
    or by one and the same separator."""
    groups = _groups(text, start, end)
    count = len(groups)
    for first in range(count):
        first_start, run_end = groups[first]
        if text[first_start] not in "23456":  # no issuer's range begins with 0, 1, 7, 8 or 9
            continue
        digits = text[first_start:run_end]
        separator: str | None = None
        last = first
        while len(digits) <= 19:
            if (
                len(digits) >= 13
                and _issued_card(digits)
                and _detached(text, first_start, run_end)
                and not _continues(text, groups, first, last)
            ):
                yield first_start, run_end
            last += 1
            if last == count:
                break
            group_start, group_end = groups[last]
            joint = text[run_end:group_start]
            if len(joint) > 1 or (separator is not None and joint != separator):
                break  # a card's groups share one separator of one character
            separator = joint
            digits += text[group_start:group_end]
            run_end = group_end


def _continues(text: str, groups: list[Span], first: int, last: int) -> bool:
    """Whether the grouped number goes on past the span with its own separator, making the
    span a piece of a longer number (`9400 5646 7297 5216 3944 32`, a tracking number)."""
    if first == last:
        return False
    separator = text[groups[first][1] : groups[first + 1][0]]
    if not separator:
        return False
    start, end = groups[first][0], groups[last][1]
    before = text[max(0, start - 2) : start]
    after = text[end : end + 2]
    return (before[1:] == separator and before[:1].isdigit()) or (
        after[:1] == separator and after[1:].isdigit()
    )


# --- US SSN and ITIN ----------------------------------------------------------------------

_SSN_KEYWORD = re.compile(r"(?i)(?:ssn|social security(?: number| no\.?)?|ss#|ss no\.?)\W{0,4}$")
_NINE_DIGITS = re.compile(r"(\d{3})([ .-]?)(\d{2})\2(\d{4})")
"""3-2-4 digits, joined by nothing or twice by the same separator."""


def _nine_digit_spans(valid: Callable[[str], bool]) -> SpanFinder:
    def spans(text: str, start: int, end: int) -> Iterator[Span]:
        shape = _NINE_DIGITS.fullmatch(text, start, end)
        if shape is None:
            return
        area, separator, group, serial = shape.groups()
        if not separator and not _SSN_KEYWORD.search(text, max(0, start - 30), start):
            return  # nine bare digits are an SSN only where the text says so
        if valid(area + group + serial) and _detached(text, start, end):
            yield start, end

    return spans


_ITIN_GROUPS = frozenset([*range(50, 66), *range(70, 89), *range(90, 93), *range(94, 100)])


def _valid_itin(number: str) -> bool:
    """The IRS's rules: 9xx, and a group in 50-65, 70-88, 90-92 or 94-99 (python-stdnum's
    `us.itin` lacks the 50-65 range the IRS also issues from)."""
    return number[0] == "9" and int(number[3:5]) in _ITIN_GROUPS


# --- IBAN ----------------------------------------------------------------------------------


_BBAN_CLASSES = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Za-z0-9]", "e": " "}
_IBAN_FORMATS: dict[str, re.Pattern[str]] = {
    str(country): re.compile(
        "".join(
            f"{_BBAN_CLASSES[kind]}{{{size}}}"
            for size, kind in re.findall(r"(\d+)!?([nace])", str(fields["bban"]))
        )
    )
    for _length, country, _high, fields, _children in numdb.get("iban").prefixes
    if "bban" in fields
}
"""Each country's account number format, from python-stdnum's copy of the SWIFT registry."""
_IBAN_LENGTHS = {
    country: 4 + sum(int(size) for size in re.findall(r"\{(\d+)\}", bban.pattern))
    for country, bban in _IBAN_FORMATS.items()
}


def _valid_iban(compact: str) -> bool:
    """The country's format and the ISO 7064 mod 97-10 check digits."""
    bban = _IBAN_FORMATS.get(compact[:2])
    if bban is None or not bban.fullmatch(compact, 4):
        return False
    return iban_check_valid(compact)


def _iban_spans(text: str, start: int, end: int) -> Iterator[Span]:
    """The IBAN that begins at each country code in the region (hyperscan finds where one may
    begin; regions that overlap were merged). Its country fixes its length, so the one place
    it can end is found by counting characters on from there, single spaces between them."""
    for country in _IBAN_START.finditer(text, start, end):
        begin = country.start()
        whole = _IBAN_OF_LENGTH.get(text[begin : begin + 2])
        if whole is None:
            continue
        found = whole.match(text, begin)
        if found is None or text[found.end() : found.end() + 1].isalnum():
            continue  # too short, or it runs on past the IBAN's length
        if _valid_iban(found.group().replace(" ", "").upper()):
            yield begin, found.end()


_IBAN_START = re.compile(r"\b[A-Z]{2}[0-9]{2}")
_IBAN_OF_LENGTH = {
    country: re.compile(f"[A-Z]{{2}}[0-9]{{2}}(?: ?[A-Za-z0-9]){{{length - 4}}}")
    for country, length in _IBAN_LENGTHS.items()
}
"""Per country, its IBAN's characters from the country code on, single spaces between any."""


# --- UK National Insurance number ----------------------------------------------------------

_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def _nino_spans(text: str, start: int, end: int) -> Iterator[Span]:
    value = text[start:end]
    compact = value.replace(" ", "")
    spaced = value.count(" ")
    if spaced not in (0, 4) or compact[:2] in _NINO_BAD_PREFIXES:
        return
    if compact[0] in "DFIQUV" or compact[1] in "DFIOQUV":
        return
    yield start, end


# --- phone numbers -------------------------------------------------------------------------

_PHONE_WORD = (
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|fax|call(?:ed)?|sms|text|whatsapp|contact|dial)"
)
_PHONE_KEYWORD = re.compile(_PHONE_WORD + r"\b\.?(?:\W{1,3}\w{1,6}){0,2}\W{0,4}$")
"""A word that says phone, at most two short words before the number (`call me on`)."""
_NOT_PHONES = re.compile(
    r"\(?\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\)?(?: \d{1,2})?|\d{3}([ .-])\d{2}\1\d{4}"
)
"""Dates (`08.10.2023`, `2026-12-15 03`) and SSN-shaped numbers, which libphonenumber may
accept as some country's number."""


_NATIONAL_REGIONS = tuple(
    (region, phonenumbers.country_code_for_region(region))
    for region in ("GB", "DE", "FR", "NL", "IT", "IE", "BE", "AT", "CH", "AU")
)
"""Regions whose national format (a leading trunk 0) is tried for numbers without a `+`."""


def _valid_phone(value: str, digits: str, formatted: bool) -> bool:
    """Whether libphonenumber knows the number: international (`+`), national after a trunk
    0 in one of `_NATIONAL_REGIONS`, or North American (NANP) when written grouped or named."""
    if value.startswith("+"):
        return _valid_international(value, digits)
    if digits.startswith("0"):  # Italy keeps its 0 in the number
        return _matches(_TRUNK_REGIONS, digits[1:]) or _matches(_ITALY, digits)
    if formatted and (len(digits) == 10 or (len(digits) == 11 and digits[0] == "1")):
        return _known(1, digits[-10:])  # any NANP country: US, CA, PR, ...
    return False


def _valid_international(value: str, digits: str) -> bool:
    """A `+CC national` number, split by the code that begins it (E.164 codes are a prefix
    code, so at most one of its first three digits' prefixes is one), without parsing.

    A national part that begins with 0 is either a trunk 0 written after the code (`+44 (0)20
    ...`), which libphonenumber drops, or part of the number (Italy keeps its 0). When the
    number is valid read one of these ways, the parser would find it valid too; otherwise its
    own rules decide (they keep or drop a trunk prefix country by country)."""
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            if "(0)" not in value and national[:1] not in ("0", ""):
                return _known(code, national)
            if "(0)" in value:
                if national[:1] == "0" and _trunk_zero(code) and _known(code, national[1:]):
                    return True
            elif _known(code, national):
                return True
            break
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    return number.country_code is not None and _known(
        number.country_code, phonenumbers.national_significant_number(number)
    )


@cache
def _trunk_zero(code: int) -> bool:
    """Whether every country of the calling code dials 0 before national numbers (the 0
    that `+44 (0)20 ...` shows and the parser drops)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    metadata = [phonenumbers.PhoneMetadata.metadata_for_region(region) for region in regions]
    return bool(metadata) and all(
        data is not None
        and data.national_prefix_for_parsing in (None, "0")
        and data.national_prefix == "0"
        for data in metadata
    )


def _known(code: int, national: str) -> bool:
    """A valid number of one of the countries that share the calling code."""
    return _matches(_validity_of_code(code), national)


def _valid_for(code: int, region: str, national: str) -> bool:
    """libphonenumber's `is_valid_number_for_region` for one region."""
    return _matches(_validity(((code, region),)), national)


def _matches(validity: re.Pattern[str] | None, national: str) -> bool:
    return validity is not None and validity.fullmatch(national) is not None


_TYPES = (
    "fixed_line", "mobile", "toll_free", "voip", "premium_rate", "shared_cost",
    "personal_number", "pager", "uan", "voicemail",
)  # fmt: skip
"""Any type makes a number valid, so the common ones are tried first."""


@cache
def _validity_of_code(code: int) -> re.Pattern[str] | None:
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    return _validity(tuple((code, region) for region in regions))


@cache
def _validity(places: tuple[tuple[int, str], ...]) -> re.Pattern[str] | None:
    """libphonenumber's test for a valid number in any of the places (its
    `is_valid_number_for_region`: the region's general pattern and possible lengths, then any
    number type's) on its own metadata, as one regex: the 25 regions that share `+1` are tried
    in one call, not one after another."""
    rules = [rule for rule in (_region_rule(code, region) for code, region in places) if rule]
    return re.compile("|".join(rules)) if rules else None


def _region_rule(code: int, region: str) -> str | None:
    metadata = (
        phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code)
        if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
        else phonenumbers.PhoneMetadata.metadata_for_region(region)
    )
    if metadata is None:
        return None
    general = _desc_rule(metadata.general_desc)
    types = [rule for rule in (_desc_rule(getattr(metadata, name)) for name in _TYPES) if rule]
    if general is None or not types:
        return None
    return f"(?=(?:{general})\\Z)(?:{'|'.join(types)})"


def _desc_rule(desc: phonenumbers.PhoneNumberDesc | None) -> str | None:
    """A number description's pattern, behind a look-ahead for its possible lengths (a
    description whose only length is -1 has no numbers)."""
    if desc is None or desc.national_number_pattern is None:
        return None
    pattern = f"(?:{desc.national_number_pattern})"
    lengths = desc.possible_length or ()
    if not lengths:
        return pattern
    if all(length < 1 for length in lengths):
        return None
    ahead = "|".join(f".{{{length}}}\\Z" for length in sorted(lengths) if length > 0)
    return f"(?={ahead}){pattern}"


_TRUNK_REGIONS = _validity(
    tuple((code, region) for region, code in _NATIONAL_REGIONS if region != "IT")
)
_ITALY = _validity(((39, "IT"),))


_GROUPED_CODE_BEFORE = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4})+ \Z")


def _inside_longer_code(text: str, first: int, last: int) -> bool:
    """Digits that continue an IBAN-like run of groups before them, or go on after them with
    the number's own spacing (`3023 901553 2444`)."""
    if _GROUPED_CODE_BEFORE.search(text, max(0, first - 40), first):
        return True
    after = text[last : last + 2]
    return after[:1] == " " and after[1:].isdigit() and " " in text[first:last]


def _may_start_a_phone(text: str, start: int, end: int) -> bool:
    """Without `+` or `(`, a number begins with a trunk 0, an area code (`415`), NANP's `1`, or
    is all digits at once (after a word like `phone:`); `5678` in a card number does not."""
    size = end - start
    lead = text[start]
    return lead == "0" or size >= 7 or (size == 3 and lead != "1") or (size == 1 and lead == "1")


def _phone_spans(text: str, start: int, end: int) -> Iterator[Span]:
    """Phone numbers written as such: with a `+`, grouped, or after a word like `phone:`."""
    groups = _groups(text, start, end)
    for index, (first, group_end) in enumerate(groups):
        if first > start and text[first - 1] in "+(":
            first -= 1
        elif not _may_start_a_phone(text, first, group_end):
            continue
        joint = text[first - 2 : first] if first >= 2 else ""
        if (joint[-1:] in (".", "-", "/") and joint[0].isalnum()) or (
            joint[-1:] == " " and joint[0].isdigit()
        ):
            continue  # the tail of a longer number or code (`DE89 3704 0044`, `ORD-2024-000123`)
        ends: list[int] = []
        count = 0
        for next_index in range(index, len(groups)):
            group_start, group_end = groups[next_index]
            count += group_end - group_start
            if count > 15:
                break
            if count >= 7:
                ends.append(group_end)
        if not ends:
            continue
        keyword: bool | None = None  # looked for only when a value is bare digits
        for last in reversed(ends):
            value = text[first:last]
            digits = _digits(value)
            formatted = len(digits) != len(value)
            if not formatted:
                if keyword is None:
                    keyword = bool(_PHONE_KEYWORD.search(text, max(0, first - 24), first))
                formatted = keyword
            if (  # the cheap checks first
                _detached(text, first, last)
                and not _NOT_PHONES.fullmatch(value)
                and _valid_phone(value, digits, formatted)
                and not _inside_longer_code(text, first, last)
            ):
                yield first, last
                break


# --- email and IP addresses ----------------------------------------------------------------

_EMAIL_DOMAIN = re.compile(r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\b")
_EMAIL_LOCAL_BACKWARDS = re.compile(r"[A-Za-z0-9._%+-]{1,64}")
"""A local part read backwards from its `@`: one pass, where searching forwards for the
leftmost start that reaches the `@` tries every start."""


def _email_spans(text: str, start: int, end: int) -> Iterator[Span]:
    """Hyperscan finds `@label.x`; Python reads the domain on from there (at most 254
    characters) and the local part backwards from the `@`."""
    domain = _EMAIL_DOMAIN.match(text, start, start + 255)
    if domain is None:
        return
    window = text[max(0, start - 64) : start]
    local = _EMAIL_LOCAL_BACKWARDS.match(window[::-1])
    if local is None:
        return
    begin = start - local.end()
    while text[begin] == ".":  # a local part does not begin with a dot
        begin += 1
    if begin < start:
        yield begin, domain.end()


def _ipv4_spans(text: str, start: int, end: int) -> Iterator[Span]:
    if IPV4.fullmatch(text, start, end) and _detached(text, start, end):
        yield start, end


_HEX_GROUP_AT_END = re.compile(r"[0-9A-Fa-f]{1,4}\Z")


def _ipv6_spans(text: str, start: int, end: int) -> Iterator[Span]:
    """The longest valid address from the region's start (or from the group before it, for a
    region that begins at a colon). One without a digit (`abc::def`, `std::`) is code, not an
    address."""
    if text[start] == ":":
        group = _HEX_GROUP_AT_END.search(text, max(0, start - 4), start)
        start = group.start() if group else start
    for cut in range(end, start, -1):
        if cut < end and text[cut] != ":" and text[cut - 1] != ":":
            continue
        value = text[start:cut]
        if value.count(":") < 2 or not any(char.isdigit() for char in value):
            return
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        if not (start >= 1 and (text[start - 1].isalnum() or text[start - 1] == ":")):
            yield start, cut
        return


# --- secrets -------------------------------------------------------------------------------

_SECRET_TOKENS = tuple(
    re.compile(pattern)
    for pattern in (
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",  # AWS access key ids
        r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b",  # GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{50,255}\b",
        r"\bxox[abposr]-[A-Za-z0-9-]{10,250}\b",  # Slack
        r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,250}\b",  # OpenAI, Anthropic
        r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,250}\b",  # Stripe
        r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API keys
        r"\beyJ[A-Za-z0-9_-]{8,2700}\.eyJ[A-Za-z0-9_-]{8,2700}\.[A-Za-z0-9_-]{8,2700}\b",  # JWT
    )
)
_ANY_SECRET_TOKEN = re.compile("|".join(f"(?:{token.pattern})" for token in _SECRET_TOKENS))
"""Each token begins with its own literal (`AKIA`, `ghp_`, `sk-`, `eyJ`, ...), so at most
one of them matches at a place."""
_ASSIGNMENT = (
    r"(?i)(?:key|token|secret|passw(?:or)?d|pwd|credential|auth)[A-Za-z0-9_.-]{0,20}"
    r"[\"']?[ \t]{0,3}[:=]"
)
"""A name that says secret, then `=` or `:`; the value after it is checked in Python."""
_ASSIGNED_VALUE = re.compile(r"[ \t]{0,3}[\"']?(?P<value>[^\s\"'`\\]{16,256})")
_A_DIGIT = re.compile("[0-9]")
_A_LETTER = re.compile("[A-Za-z]")
_NEXT_PARAMETER = re.compile(r"&\w+=.*")
"""In a URL query, the value ends where the next parameter begins (`token=...&format=csv`)."""
_SECRET_CHARS = "!#-&(-\\[\\]-_a-~"  # noqa: S105  # a character class, not a password
"""Printable ASCII but space, quotes, backquote and backslash: what a password may hold."""
_PEM_BEGIN = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PEM_BEGIN_AT_END = re.compile(r"-{1,5}(?:B(?:E(?:G(?:I(?:N(?: [A-Z0-9 ]*-{0,5})?)?)?)?)?)?\Z")
"""A header still being written: `-----BEGIN RSA PRIV`."""
_PEM_BEGIN_RE = re.compile(_PEM_BEGIN)


def _prefix(pattern: str) -> str:
    """What hyperscan looks for: the token's pattern up to its first variable-length part, at
    that part's least length. Python then matches the whole token from where this starts;
    tracking where an open-ended match starts would cost hyperscan most of its speed."""
    repeat = re.search(r"\{(\d+),\d+\}", pattern)
    if repeat is None:
        return pattern
    return pattern[: repeat.start()] + "{" + repeat.group(1) + "}"


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character: log2(size) - sum(n * log2(n)) / size over the
    characters' counts n, summed in C from a table."""
    size = len(value)
    return math.log2(size) - sum(map(_N_LOG2_N.__getitem__, map(value.count, set(value)))) / size


_N_LOG2_N = [0.0] + [n * math.log2(n) for n in range(1, 257)]
"""n * log2(n) for every count a value of at most 256 characters can hold."""


def _secret_spans(text: str, start: int, end: int) -> Iterator[Span]:
    if _PEM_BEGIN_RE.match(text, start, end):
        footer = _PEM_END.search(text, end)
        yield start, footer.end() if footer else len(text)
    elif token := _ANY_SECRET_TOKEN.match(text, start):
        yield token.span()
    else:  # key=value: the value alone, when it looks generated rather than written
        assigned = _ASSIGNED_VALUE.match(text, end)
        if assigned is None:
            return
        secret = _NEXT_PARAMETER.sub("", assigned.group("value")).rstrip(".,;:)]}>")
        if (
            len(secret) >= 16
            and _A_DIGIT.search(secret)
            and _A_LETTER.search(secret)
            and _entropy(secret) >= 3.0
        ):
            begin = assigned.start("value")
            yield begin, begin + len(secret)


_TOKEN_TAIL = tail_run(_SECRET_CHARS, _SECRET_CHARS, 8200)


def _secret_tail(text: str) -> int | None:
    """An open PEM block (however long), a partial header, or a token still being written."""
    headers = list(_PEM_BEGIN_RE.finditer(text)) if "-----BEGIN " in text else []
    if headers and _PEM_END.search(text, headers[-1].end()) is None:
        return headers[-1].start()
    cut = max(0, len(text) - 60)
    partial = _PEM_BEGIN_AT_END.search(text, cut) if "-" in text[cut:] else None
    starts = (partial.start() if partial else None, _TOKEN_TAIL(text))
    return min((start for start in starts if start is not None), default=None)


BUILTIN: dict[str, Detector] = {
    detector.entity: detector
    for detector in (
        Detector(
            "secret",
            (
                *(_prefix(token.pattern) for token in _SECRET_TOKENS),
                _ASSIGNMENT,
                _PEM_BEGIN,
            ),
            _secret_spans,
            _secret_tail,
        ),
        Detector(
            "credit_card",
            (r"\b[2-6]\d(?:[ -]?\d){11,17}\b",),  # 13 to 19 digits; issuers' first digits
            _card_spans,
            tail_run(r"\d -", r"\d", 40),
            _digits,
            merge=True,
        ),
        Detector(
            "iban",
            (r"\b[A-Z]{2}\d{2}(?: ?[A-Za-z0-9]){4}",),  # where one begins; see _iban_spans
            _iban_spans,
            tail_pattern(r"\b[A-Z]{1,2}|\b[A-Z]{2}\d{1,2}|\b[A-Z]{2}\d{2}(?: ?[A-Za-z0-9])* ?", 70),
            lambda value: value.replace(" ", "").upper(),
            merge=True,
        ),
        Detector(
            "us_ssn",
            (
                r"\b[0-8]\d{2}[ .-]?\d{2}[ .-]?\d{4}\b",
                r"\b[0-8]\d{8}\b",
            ),
            _nine_digit_spans(ssn_issued),
            tail_run(r"\d .-", r"\d", 12),
            _digits,
        ),
        Detector(
            "us_itin",
            (r"\b9\d{2}[ .-]?\d{2}[ .-]?\d{4}\b",),
            _nine_digit_spans(_valid_itin),
            tail_run(r"\d .-", r"\d", 12),
            _digits,
        ),
        Detector(
            "uk_nino",
            (r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",),
            _nino_spans,
            tail_pattern(r"\b[A-Z]{1,2}|\b[A-Z]{2} ?[\d ]*[A-D]?", 14),
            lambda value: value.replace(" ", ""),
        ),
        Detector(
            "email",
            (r"@[A-Za-z0-9-]+\.[A-Za-z]",),  # where the domain begins; see _email_spans
            _email_spans,
            tail_run("A-Za-z0-9._%+@-", "A-Za-z0-9._%+-", 320),
            str.lower,
        ),
        Detector(
            "ip_address",
            (
                r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b",
                r":[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){6}",  # from its first colon (cheaper)
                r"(?:\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?::[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}\b",
                r"\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6}::(?:[^0-9A-Fa-f:]|$)",
            ),
            lambda text, start, end: (
                _ipv4_spans(text, start, end)
                if "." in text[start:end]
                else _ipv6_spans(text, start, end)
            ),
            tail_run("0-9A-Fa-f:.", "0-9A-Fa-f:.", 46),
            str.lower,
        ),
        Detector(
            "phone",
            (
                r"\+\d[\d ().-]{5,22}\d\b",  # international
                r"\(\d{1,5}\)[ .-]?\d[\d .-]{3,16}\d\b",  # (area code)
                r"\b0\d(?:[ .-]?\d){5,13}\b",  # national, after a trunk 0
                r"\b[2-9]\d{2}[ .-]\d{3}[ .-]\d{4}\b",  # North American
                r"\b1[ .-][2-9]\d{2}[ .-]\d{3}[ .-]\d{4}\b",
                _PHONE_WORD + r"\b[^0-9\n]{0,20}\d(?:[ .-]?\d){6,14}\b",  # `call me on 4155550132`
            ),
            _phone_spans,
            tail_run(r"\d ().+-", r"\d(+", 26),
            _digits,
            merge=True,
            prepare=lambda: _validity_of_code(1),  # every NANP number: 25 regions, about 40 ms
        ),
    )
}
"""Built-in detectors, in the order that breaks ties between equal spans."""
