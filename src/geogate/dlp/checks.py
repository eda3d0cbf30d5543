"""Check digits, issuing rules and IPv4 addresses, done the short way: the last step of every
card, IBAN, SSN and IPv4 finding.

python-stdnum and `ipaddress` are the reference: `tests/test_dlp_checks.py` holds each check
here to them over random and edge-case input. Their general versions clean the input again,
raise exceptions for control flow and build tuples, which cost about 4 µs a value here, a
tenth of a core's budget for a KB of prose at 50 MB/s. The callers have already checked the
shape (ASCII digits, an IBAN's letters and digits), so what is left is arithmetic and rules.
"""

from __future__ import annotations

import re

_DOUBLED = str.maketrans("0123456789", "0246813579")
"""Each digit doubled, its two digits summed (Luhn's step for every second digit)."""


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812-1's check digit (Luhn), as `stdnum.luhn.is_valid`, for ASCII digits."""
    return sum(map(int, digits[-1::-2] + digits[-2::-2].translate(_DOUBLED))) % 10 == 0


_BASE36 = str.maketrans({chr(ord("A") + n): str(10 + n) for n in range(26)})
"""IBAN letters as numbers (`A` is 10, ..., `Z` is 35)."""


def iban_check_valid(compact: str) -> bool:
    """ISO 7064 mod 97-10 over an IBAN, as `stdnum.iso7064.mod_97_10.is_valid` over its
    rearranged form: `compact` is upper-case letters and digits, country code first."""
    return int((compact[4:] + compact[:4]).translate(_BASE36)) % 97 == 1


_ADVERTISED_SSNS = frozenset({"078051120", "457555462", "219099999"})
"""Numbers the SSA voided after they appeared in advertising (stdnum's blacklist)."""


def ssn_issued(digits: str) -> bool:
    """The SSA's rules, as `stdnum.us.ssn.is_valid` applies them, for nine ASCII digits: area
    not 000, 666 or 9xx, group not 00, serial not 0000, not a voided number."""
    return (
        digits[0] != "9"
        and digits[:3] not in ("000", "666")
        and digits[3:5] != "00"
        and digits[5:] != "0000"
        and digits not in _ADVERTISED_SSNS
    )


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
"""What `ipaddress.IPv4Address` accepts (no leading zeros), in one regex call instead of a
parse that raises on every miss."""
