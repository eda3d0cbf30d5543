"""The engine's own check digits, issuing rules and IPv4 shape agree with python-stdnum and
`ipaddress`, value by value."""

from __future__ import annotations

import ipaddress
import random
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.iso7064 import mod_97_10
from stdnum.us import ssn

from geogate.dlp.checks import IPV4, iban_check_valid, luhn_valid, ssn_issued

DIGITS = st.text(alphabet=string.digits, min_size=1, max_size=24)


@settings(max_examples=1000, deadline=None)
@given(DIGITS)
def test_luhn_agrees_with_stdnum(digits: str) -> None:
    assert luhn_valid(digits) == luhn.is_valid(digits)


def test_luhn_on_valid_numbers_of_every_length() -> None:
    rng = random.Random(7)
    for length in range(2, 20):
        for _ in range(200):
            body = "".join(rng.choice(string.digits) for _ in range(length - 1))
            number = body + luhn.calc_check_digit(body)
            assert luhn_valid(number)
            wrong = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
            assert not luhn_valid(wrong)


@settings(max_examples=1000, deadline=None)
@given(
    st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=2),
    st.text(alphabet=string.digits, min_size=2, max_size=2),
    st.text(alphabet=string.ascii_uppercase + string.digits, min_size=8, max_size=30),
)
def test_iban_check_agrees_with_stdnum(country: str, check: str, bban: str) -> None:
    compact = country + check + bban
    assert iban_check_valid(compact) == mod_97_10.is_valid(compact[4:] + compact[:4])


def test_iban_check_on_valid_numbers() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        country = "".join(rng.choice(string.ascii_uppercase) for _ in range(2))
        bban = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(18))
        check = mod_97_10.calc_check_digits(bban + country)
        assert iban_check_valid(country + check + bban)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=string.digits, min_size=9, max_size=9))
def test_ssn_rules_agree_with_stdnum(digits: str) -> None:
    assert ssn_issued(digits) == ssn.is_valid(digits)


def test_ssn_rules_at_every_edge() -> None:
    edges = ["000", "001", "665", "666", "667", "899", "900", "999", "078", "457", "219"]
    groups = ["00", "01", "05", "09", "55", "99"]
    serials = ["0000", "0001", "1120", "5462", "9999"]
    for area in edges:
        for group in groups:
            for serial in serials:
                digits = area + group + serial
                assert ssn_issued(digits) == ssn.is_valid(digits), digits


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(0, 299).map(str), st.text(string.digits, min_size=1, max_size=4)),
        min_size=3,
        max_size=5,
    )
)
def test_ipv4_shape_agrees_with_ipaddress(octets: list[str]) -> None:
    value = ".".join(octets)
    try:
        ipaddress.IPv4Address(value)
        valid = True
    except ValueError:
        valid = False
    assert (IPV4.fullmatch(value) is not None) == valid, value
