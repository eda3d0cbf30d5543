"""A labelled corpus for the masking engine: realistic text with every entity, and near-misses.

`corpus()` returns samples whose ground truth is known: support tickets, CRM notes and chat
messages (`form="prose"`), JSON documents (`form="json"`) and texts full of things that look
like an entity but are not one (`form="near_miss"`, no spans). Values come from Faker (seeded, so
the corpus is the same on every machine) or are built here in the shapes real systems issue.

Ground truth is kept honest: a phone number is labelled only when `phonenumbers` says the number
is valid as written, every card passes Luhn with a real IIN, every IBAN its mod-97 check, and
every SSN, ITIN and NINO follows its issuing rules. Near-misses are checked the other way round.
The test (`tests/test_dlp_corpus.py`) and the bench (`bench.masking`) both read it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import phonenumbers
from faker import Faker

from geogate.config import BUILTIN_ENTITIES

ENTITIES = tuple(sorted(BUILTIN_ENTITIES))
VALIDATED = ("credit_card", "iban", "us_ssn", "us_itin", "uk_nino")

Segment = tuple[str | None, str]  # (entity or None for plain text, text)


@dataclass(frozen=True)
class Sample:
    """One text and what is in it: `spans` are (entity, start, end) in Python str indexes."""

    text: str
    spans: list[tuple[str, int, int]]
    form: str  # prose | json | near_miss
    kinds: dict[int, str] = field(default_factory=dict)  # span index -> value kind (card type...)


# --- value generators -------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
IBAN_LOCALES = (
    "de_DE",
    "fr_FR",
    "en_GB",
    "nl_NL",
    "es_ES",
    "it_IT",
    "pl_PL",
    "pt_PT",
    "fi_FI",
    "en_IE",
    "de_AT",
    "de_CH",
    "no_NO",
)
PHONE_LOCALES = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "es_ES": "ES"}
NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "nl_NL")
CARD_TYPES = ("visa16", "visa16", "mastercard", "mastercard", "amex", "discover", "jcb16", "diners")
NINO_BAD_FIRST = set("DFIQUV")
NINO_BAD_SECOND = set("DFIQUVO")
NINO_BAD_PREFIXES = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
ID_REGIONS = ("US", "GB", "DE", "FR", "NL", "ES", "IT", "IE", "BE", "AT", "CH", "AU")
"""Where a long digit id with a leading 0 must not be a valid national number."""
ITIN_GROUPS = [*range(50, 66), *range(70, 89), *range(90, 93), *range(94, 100)]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_ok(area: int, group: int, serial: int) -> bool:
    return area not in (0, 666) and area < 900 and group != 0 and serial != 0


def itin_ok(area: int, group: int) -> bool:
    return 900 <= area <= 999 and group in ITIN_GROUPS


def nino_ok(prefix: str, suffix: str) -> bool:
    return (
        prefix[0] not in NINO_BAD_FIRST
        and prefix[1] not in NINO_BAD_SECOND
        and prefix not in NINO_BAD_PREFIXES
        and suffix in "ABCD"
    )


def phone_ok(written: str, region: str) -> bool:
    try:
        number = phonenumbers.parse(written, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


FAKERS: dict[str, Faker] = {}
EARLIEST = datetime.datetime(2022, 1, 1)  # fixed, not relative to today: the corpus never changes
LATEST = datetime.datetime(2026, 12, 31)


def national_phone(digits: str) -> bool:
    """Whether bare digits are a valid number in a national format `long_id` avoids."""
    regions = ID_REGIONS if digits.startswith("0") else ("US",)
    return any(phone_ok(digits, region) for region in regions)


class Values:
    """Every value the templates need, from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fakers: dict[str, Faker] = {}
        for n, locale in enumerate(sorted({*IBAN_LOCALES, *PHONE_LOCALES, *NAME_LOCALES})):
            if locale not in FAKERS:  # made once per process: making one takes about 30 ms
                FAKERS[locale] = Faker(locale)
            FAKERS[locale].seed_instance(seed * 1000 + n)
            self.fakers[locale] = FAKERS[locale]
        self.us = self.fakers["en_US"]

    def pick(self, options: Sequence[str]) -> str:
        return self.rng.choice(options)

    def chars(self, alphabet: str, count: int) -> str:
        return "".join(self.rng.choices(alphabet, k=count))

    def digits(self, count: int) -> str:
        return self.chars(string.digits, count)

    # labelled values

    def us_ssn(self) -> str:
        value = self.us.ssn()
        return value if self.rng.random() < 0.7 else value.replace("-", " ")

    def us_ssn_bare(self) -> str:
        return self.us.ssn().replace("-", "")

    def us_itin(self) -> str:
        if self.rng.random() < 0.7:
            value = self.us.itin()
        else:  # the 50-65 groups faker does not make
            value = f"9{self.digits(2)}-{self.rng.randint(50, 65)}-{self.rng.randint(1, 9999):04d}"
        return value if self.rng.random() < 0.8 else value.replace("-", " ")

    def card_number(self, card_type: str) -> str:
        """A number that passes Luhn in a range the network really issues.

        Faker draws JCB from all of 35xx (issued: 3528-3589) and Diners from 38 as well (14
        digits there is not an issued shape); those draws are made again.
        """
        while True:
            number = str(self.us.credit_card_number(card_type=card_type))
            assert luhn_ok(number)
            if card_type.startswith("jcb") and not "3528" <= number[:4] <= "3589":
                continue
            if card_type == "diners" and number.startswith("38"):
                continue
            return number

    def credit_card(self) -> tuple[str, str]:
        card_type = self.pick(CARD_TYPES)
        return self.format_card(self.card_number(card_type)), card_type

    def format_card(self, number: str) -> str:
        separator = self.pick(("", " ", " ", "-"))
        if not separator:
            return number
        sizes = {15: (4, 6, 5), 14: (4, 6, 4)}.get(len(number), (4,) * 4 + (3,))
        groups, at = [], 0
        for size in sizes:
            if at < len(number):
                groups.append(number[at : at + size])
                at += size
        return separator.join(groups)

    def iban_compact(self) -> str:
        value: str = self.fakers[self.pick(IBAN_LOCALES)].iban()
        assert iban_ok(value)
        return value

    def iban(self) -> tuple[str, str]:
        compact = self.iban_compact()
        written = self.format_iban(compact)
        return written, compact[:2] + (" grouped" if " " in written else " compact")

    def format_iban(self, compact: str) -> str:
        if self.rng.random() < 0.5:
            return compact
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))

    def email(self) -> str:
        fake = self.fakers[self.pick(NAME_LOCALES)]
        style = self.rng.random()
        if style < 0.4:
            return str(fake.email())
        if style < 0.6:
            return str(fake.company_email())
        if style < 0.8:
            return str(fake.free_email())
        user = self.us.user_name()
        tag = self.pick(("billing", "news", "support", "2024"))
        host = self.pick(
            ("mail.example.co.uk", "eu.corp-example.com", "example.de", "uni.example.edu")
        )
        return f"{user}+{tag}@{host}"

    def phone(self) -> tuple[str, str]:
        locale = self.pick(("en_US", "en_US", "en_US", "en_GB", "de_DE", "fr_FR", "es_ES"))
        region = PHONE_LOCALES[locale]
        while True:
            written = str(self.fakers[locale].phone_number())
            written = re.split(r"\s*x", written)[0]  # extensions are not part of the number
            if written.startswith("001-"):
                written = "+1-" + written[4:]
            if not phone_ok(written, region):
                continue
            if region == "US" or written.startswith("+"):
                return written, f"{region} as faker writes it"
            # national formats outside the US are out of scope: write it the international way
            number = phonenumbers.parse(written, region)
            international = phonenumbers.PhoneNumberFormat.INTERNATIONAL
            return phonenumbers.format_number(number, international), f"{region} international"

    def ip_address(self) -> tuple[str, str]:
        style = self.rng.random()
        if style < 0.35:
            return str(self.us.ipv4_public()), "ipv4 public"
        if style < 0.6:
            return str(self.us.ipv4_private()), "ipv4 private"
        address = ipaddress.IPv6Address(self.us.ipv6())
        if style < 0.8:
            return str(address.exploded), "ipv6 exploded"
        return str(address.compressed), "ipv6 compressed"

    def uk_nino(self) -> str:
        while True:
            prefix = self.chars(string.ascii_uppercase, 2)
            suffix = self.pick(("A", "B", "C", "D"))
            if nino_ok(prefix, suffix):
                break
        number = self.digits(6)
        if self.rng.random() < 0.5:
            return f"{prefix}{number}{suffix}"
        return f"{prefix} {number[:2]} {number[2:4]} {number[4:]} {suffix}"

    def pem(self) -> str:
        label = self.pick(
            ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY")
        )
        body = base64.b64encode(self.rng.randbytes(self.rng.randint(120, 1200))).decode()
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])

    def jwt(self) -> str:
        def part(document: dict[str, object]) -> str:
            raw = json.dumps(document, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        alg = self.pick(("HS256", "RS256", "ES256"))
        claims = {
            "sub": str(self.us.uuid4()),
            "name": self.us.name(),
            "iat": self.rng.randint(1_600_000_000, 1_800_000_000),
            "scope": "openid profile",
        }
        size = {"HS256": 32, "RS256": 256, "ES256": 64}[alg]  # signature bytes
        signature = base64.urlsafe_b64encode(self.rng.randbytes(size)).rstrip(b"=").decode()
        return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}.{signature}"

    def secret(self, kind: str | None = None, bare: bool = False) -> tuple[list[Segment], str]:
        """A secret, and the text that makes it one (`key=`...) as a plain segment unless bare."""
        kind = kind or self.pick(SECRET_KINDS)
        value: str
        prefix = ""
        if kind == "aws_access_key_id":
            value = "AKIA" + self.chars(string.ascii_uppercase + "234567", 16)
        elif kind == "aws_secret_access_key":
            prefix = self.pick(("aws_secret_access_key=", "aws_secret_access_key = "))
            value = self.chars(B64, 40)
        elif kind == "github":
            if self.rng.random() < 0.6:
                value = "ghp_" + self.chars(ALNUM, 36)
            else:
                value = "github_pat_" + self.chars(ALNUM, 22) + "_" + self.chars(ALNUM, 59)
        elif kind == "slack":
            flavour = self.pick(("b", "p", "a", "s"))
            value = f"xox{flavour}-{self.digits(12)}-{self.digits(13)}-{self.chars(ALNUM, 24)}"
        elif kind == "openai":
            if self.rng.random() < 0.4:
                value = "sk-" + self.chars(ALNUM, 48)
            else:
                value = "sk-proj-" + self.chars(B64URL, 120) + self.chars(ALNUM, 4)
        elif kind == "anthropic":
            value = "sk-ant-api03-" + self.chars(B64URL, 93) + "AA"
        elif kind == "stripe":
            size = self.rng.choice((24, 99))
            value = self.pick(("sk_live_", "rk_live_")) + self.chars(ALNUM, size)
        elif kind == "pem":
            value = self.pem()
        elif kind == "jwt":
            value = self.jwt()
        elif kind == "query":  # a credential in a URL's query string
            prefix = self.pick(("token=", "key=", "access_token=", "api_key="))
            value = self.chars(ALNUM, self.rng.randint(24, 40))
        else:  # passwords are written with symbols too
            prefix = self.pick(("key=", "token=", "secret=", "password="))
            alphabet = ALNUM + "!#$%*@^" if prefix == "password=" else ALNUM
            value = self.chars(alphabet, self.rng.randint(24, 40))
        segments: list[Segment] = [(None, prefix)] if prefix and not bare else []
        return [*segments, ("secret", value)], kind

    # unlabelled fillers

    def name(self) -> str:
        return str(self.fakers[self.pick(NAME_LOCALES)].name())

    def first(self) -> str:
        return str(self.fakers[self.pick(NAME_LOCALES)].first_name())

    def company(self) -> str:
        return str(self.fakers[self.pick(NAME_LOCALES)].company())

    def city(self) -> str:
        return str(self.fakers[self.pick(NAME_LOCALES)].city())

    def order(self) -> str:
        return self.pick(
            (
                f"ORD-{self.rng.randint(2019, 2025)}-{self.rng.randint(1, 999999):06d}",
                f"INV-{self.digits(5)}-{self.digits(2)}",
                f"PO{self.digits(8)}",
                f"#{self.rng.randint(10000, 999999)}",
            )
        )

    def date(self) -> str:
        moment = self.us.date_time_between_dates(EARLIEST, LATEST)
        return moment.strftime(
            self.pick(("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%b %d, %Y"))
        )

    def time(self) -> str:
        moment = self.us.date_time_between_dates(EARLIEST, LATEST)
        return moment.strftime(self.pick(("%H:%M", "%H:%M:%S", "%I:%M %p", "%Y-%m-%dT%H:%M:%SZ")))

    def version(self) -> str:
        return self.pick(
            (
                f"v{self.rng.randint(0, 9)}.{self.rng.randint(0, 30)}.{self.rng.randint(0, 40)}",
                f"10.0.{self.rng.randint(10000, 22999)}",
                f"build {self.rng.randint(19000, 26999)}.{self.rng.randint(1, 4999)}",
                f"{self.rng.randint(1, 5)}.{self.rng.randint(0, 99)}.{self.rng.randint(0, 999)}",
            )
        )

    def long_id(self) -> str:
        """A long digit id that is no valid phone number in a national format, nor a card,
        SSN or ITIN: not as a US number, and, with a leading trunk 0, not in any region of
        `ID_REGIONS`."""
        while True:
            shape = self.rng.random()
            if shape < 0.3:  # 555 is no US area code
                value = "555" + self.digits(7)
            elif shape < 0.8:
                value = "1" + self.digits(self.rng.choice((9, 10, 11)))
            else:
                value = "0" + self.digits(self.rng.choice((9, 10, 11)))
            if not national_phone(value):
                return value

    def amount(self) -> str:
        whole = self.rng.randint(1, 99999)
        cents = self.rng.randint(0, 99)
        return self.pick(
            (
                f"${whole:,}.{cents:02d}",
                f"€{whole},{cents:02d}",
                f"£{whole:,}",
                f"{whole}.{cents:02d} USD",
            )
        )

    def zip(self) -> str:
        return self.pick(
            (
                str(self.us.zipcode()),
                str(self.us.zipcode_plus4()),
                str(self.fakers["en_GB"].postcode()),
            )
        )

    def tracking(self) -> str:
        return self.pick(
            (
                "1Z" + self.chars(string.ascii_uppercase + string.digits, 16),
                "9400 " + " ".join(self.digits(4) for _ in range(4)) + " " + self.digits(2),
                f"7{self.digits(3)} {self.digits(4)} {self.digits(4)}",  # FedEx Express
            )
        )

    def mac(self) -> str:
        return ":".join(self.chars("0123456789ABCDEF", 2) for _ in range(6))

    # near-misses

    def bad_card(self) -> str:
        number = self.card_number(self.pick(CARD_TYPES))
        last = int(number[-1])
        wrong = number[:-1] + str((last + self.rng.randint(1, 9)) % 10)
        assert not luhn_ok(wrong)
        return self.format_card(wrong)

    def bad_iban(self) -> str:
        """A real IBAN with other check digits: any change of them fails mod 97."""
        compact = self.iban_compact()
        check = self.pick([f"{n:02d}" for n in range(2, 99) if f"{n:02d}" != compact[2:4]])
        wrong = compact[:2] + check + compact[4:]
        assert not iban_ok(wrong)
        return self.format_iban(wrong)

    def bad_ssn(self) -> str:
        while True:
            area = self.pick(
                ("000", "666", f"9{self.digits(2)}", f"{self.rng.randint(1, 899):03d}")
            )
            group = self.pick(("00", f"{self.rng.randint(0, 49):02d}"))
            serial = self.pick(("0000", self.digits(4)))
            if not ssn_ok(int(area), int(group), int(serial)) and not itin_ok(
                int(area), int(group)
            ):
                return self.pick((f"{area}-{group}-{serial}", f"{area} {group} {serial}"))

    def bad_itin(self) -> str:
        group = self.pick(
            ("89", "93", f"{self.rng.randint(66, 69)}", f"{self.rng.randint(0, 49):02d}")
        )
        return f"9{self.digits(2)}-{group}-{self.digits(4)}"

    def bad_nino(self) -> str:
        while True:
            prefix = self.pick(
                (
                    self.pick(sorted(NINO_BAD_PREFIXES)),
                    self.pick(sorted(NINO_BAD_FIRST)) + self.pick(string.ascii_uppercase),
                    self.pick(string.ascii_uppercase) + self.pick(sorted(NINO_BAD_SECOND)),
                )
            )
            suffix = self.pick(("A", "B", "C", "D"))
            if not nino_ok(prefix, suffix):
                break
        number = self.digits(6)
        return self.pick(
            (
                f"{prefix}{number}{suffix}",
                f"{prefix} {number[:2]} {number[2:4]} {number[4:]} {suffix}",
            )
        )


SECRET_KINDS = (
    "aws_access_key_id",
    "aws_secret_access_key",
    "github",
    "slack",
    "openai",
    "anthropic",
    "stripe",
    "pem",
    "jwt",
    "generic",
)


# --- templates --------------------------------------------------------------------------------

PROSE: dict[str, tuple[str, ...]] = {
    "us_ssn": (
        "Ticket {order}: customer {name} asked us to update the SSN on file to {us_ssn} by {date}.",
        "CRM note ({date}): verified identity of {name} by SSN {us_ssn} and zip {zip}.",
        "hey, HR needs my social for the W-4, it's {us_ssn}. thx!",
        "Applicant {name}, SSN: {us_ssn_bare}, requested a callback at {time}.",
        "Please correct the SSN of employee {name}; the right one is {us_ssn} (old one: typo).",
        "{first}: can you run a credit check? social security number {us_ssn}, DOB {date}",
        "Form W-9 received on {date} from {company}; taxpayer {name}, SSN# {us_ssn_bare}.",
        "Caller gave SSN {us_ssn} but the account {order} is under another name.",
    ),
    "credit_card": (
        "Ticket {order}: {name} was charged {amount} twice on card {credit_card}, please refund.",
        "CRM note: customer updated the card on file to {credit_card}, exp {date}.",
        "my card number is {credit_card} can u check why the payment for {order} failed?",
        "Payment declined for {company}: card {credit_card}, amount {amount}, at {time}.",
        "Refund of {amount} issued to {credit_card} for order {order} on {date}.",
        '{first} wrote: "please use {credit_card} for the renewal, the old card expired"',
        "Chargeback received on card {credit_card} ({amount}).",
        "Card: {credit_card}\nName on card: {name}\nBilling zip: {zip}",
    ),
    "iban": (
        "Ticket {order}: please send the refund of {amount} to IBAN {iban}, account holder {name}.",
        "CRM note ({date}): {company} changed their bank details, new IBAN {iban}.",
        "hi, can you pay the invoice {order} to {iban}? it's my new account",
        "SEPA mandate signed by {name} for IBAN {iban} on {date}.",
        "Bitte überweisen Sie {amount} auf das Konto {iban} (Kontoinhaber: {name}).",
        "Merci de rembourser {amount} sur l'IBAN {iban} avant le {date}.",
        "Supplier {company}, IBAN: {iban}, payment terms 30 days, last invoice {order}.",
    ),
    "email": (
        "Ticket {order}: {name} cannot log in, the reset mail to {email} never arrived.",
        "CRM note: primary contact at {company} is now {email} (was {name}).",
        "pls cc {email} on the thread about {order}",
        "Customer {name} <{email}> asked to unsubscribe on {date}.",
        "Invoice {order} was sent to {email} at {time}; bounced, mailbox full.",
        "{first}: forwarding this to {email}, they own the {city} account.",
        "Contact: {email}; company: {company}; since {date}",
    ),
    "phone": (
        "Ticket {order}: please call {name} back at {phone} after {time}.",
        "CRM note ({date}): new mobile for {name} is {phone}.",
        "can u call me on {phone}? i'm in {city} today",
        "Caller {name} from {company}, phone {phone}, asked about invoice {order}.",
        "Missed call from {phone} at {time}, no voicemail.",
        "{first} said the office line {phone} is the best way to reach them.",
        "Phone: {phone}\nName: {name}\nCity: {city}",
    ),
    "ip_address": (
        "Ticket {order}: login from unknown address {ip_address} at {time}, {name} locked out.",
        "Firewall blocked {ip_address} after 50 failed attempts on {date}.",
        "hey can you whitelist {ip_address}? our office in {city} can't reach the API",
        "The webhook to {company} fails; their server at {ip_address} refuses us since {version}.",
        "Session of {email_plain} came from {ip_address}, user agent Firefox, {date}.",
        "Audit: admin {name} signed in from {ip_address} ({city}).",
    ),
    "us_itin": (
        "Ticket {order}: {name} does not have an SSN; their ITIN is {us_itin}.",
        "CRM note ({date}): W-7 approved, ITIN {us_itin} issued to {name}.",
        "i don't have a social, can i use my ITIN {us_itin} for the account?",
        "Taxpayer {name}, ITIN: {us_itin}, filing status single, refund {amount}.",
        "Please update the tax id of contractor {name} to ITIN {us_itin}.",
    ),
    "uk_nino": (
        "Ticket {order}: {name} sent their National Insurance number {uk_nino} for payroll.",
        "CRM note ({date}): NI number {uk_nino} verified for {name} in {city}.",
        "hiya, my NI number is {uk_nino} if you need it for the P45",
        "New starter {name}, NINO: {uk_nino}, start date {date}, salary {amount}.",
        "Please correct the NI number of {name}; it should read {uk_nino}.",
    ),
    "secret": (
        "Ticket {order}: customer pasted their credentials by mistake: {secret} Please rotate.",
        "CRM note ({date}): {company} shared {secret} in the support chat, flagged to security.",
        "here's the key for staging {secret} don't share it pls",
        "CI run for {version} failed; the log printed {secret} in plain text.",
        "Please rotate this one today:\n{secret}\nIt was committed to a public repo on {date}.",
        "export OPENAI_API_KEY={secret_openai}\nexport ANTHROPIC_API_KEY={secret_anthropic}",
        "[default]\naws_access_key_id = {secret_aws_access_key_id}\n"
        "{secret_aws_secret_access_key}\nregion = eu-west-1",
        "curl -H 'Authorization: Bearer {secret_jwt}' https://api.example.com/v1/orders/{order_plain}",
        "git remote set-url origin https://{secret_github}@github.com/acme/app.git",
        "SLACK_BOT_TOKEN={secret_slack} STRIPE_KEY={secret_stripe}",
        "The link https://files.example.com/export?user=42&{secret_query}&format=csv leaked.",
        "Here is the deploy key, please keep it safe:\n\n{secret_pem}\n\nThanks, {first}",
    ),
}

MIXED = (
    "Ticket {order} ({date}): {name}, {email}, phone {phone}, card {credit_card}, "
    "charged {amount} twice.",
    "CRM note: {name} (SSN {us_ssn}) moved to {city}; new phone {phone}, email {email}.",
    "New employee {name}: NI {uk_nino}, IBAN {iban}, start {date}, laptop from {ip_address}.",
    "hey it's {first}, my ITIN is {us_itin} and my email {email}, can you fix the 1099?",
    "Refund {amount} to {iban} for {name}, card {credit_card} was closed on {date}.",
    "Incident {order}: {ip_address} pulled data for {email} using {secret} at {time}.",
    "Onboarding {company}: billing contact {email}, phone {phone}, IBAN {iban}, VAT pending.",
    "Applicant {name}, SSN {us_ssn}, phone {phone}, applied on {date} from {ip_address}.",
)

NEAR_MISS = (
    "Ticket {order}: card {bad_card} was rejected by the form, it fails the checksum.",
    "Customer typed IBAN {bad_iban}, which our bank says is invalid; asked again on {date}.",
    "The test SSN {bad_ssn} is not a valid number and should be rejected.",
    "Number {bad_itin} looks like an ITIN but the group is not in use.",
    "Sample NI number {bad_nino} from the training deck (not a real allocation).",
    "Order {order} shipped on {date} at {time}, tracking {tracking}.",
    "Upgrade to {version} fixed the crash; see commit {sha} and issue {order}.",
    "Ticket #{long_id} was merged into {order}; reference {long_id}.",
    "Request id {uuid} failed at {time} on {date}; retry scheduled.",
    "Invoice {order} for {amount}, due {date}, ship to {zip}.",
    "ISBN {isbn} is out of stock; expected back {date}, price {amount}.",
    "Device {mac} on firmware {version} dropped the connection at {time}.",
    "Batch {long_id} processed {amount} in {version}; job {uuid}.",
    "Release {version} ({date}): build {sha} passed all checks.",
    "Call log {date} {time}: duration 00:14:32, reference {long_id}.",
    "Card {bad_card} and IBAN {bad_iban} both failed validation at {time}.",
    "Test data only: SSN {bad_ssn}, ITIN {bad_itin}, NINO {bad_nino}.",
)
CONFIG_SECRETS = (
    ("aws_access_key_id", "aws_access_key_id"),
    ("aws_secret_access_key", "aws_secret_access_key"),
    ("github_token", "github"),
    ("slack_bot_token", "slack"),
    ("openai_api_key", "openai"),
    ("anthropic_api_key", "anthropic"),
    ("stripe_secret_key", "stripe"),
    ("private_key", "pem"),
    ("id_token", "jwt"),
    ("password", "generic"),
)

PLACEHOLDER = re.compile(r"\{(\w+)\}")


class Builder:
    """Renders templates and JSON while it records where each labelled value lands."""

    def __init__(self, values: Values) -> None:
        self.values = values
        fillers: dict[str, Callable[[], str]] = {
            "name": values.name,
            "first": values.first,
            "company": values.company,
            "city": values.city,
            "order": values.order,
            "order_plain": lambda: values.digits(6),
            "date": values.date,
            "time": values.time,
            "version": values.version,
            "long_id": values.long_id,
            "amount": values.amount,
            "zip": values.zip,
            "tracking": values.tracking,
            "mac": values.mac,
            "uuid": lambda: str(values.us.uuid4()),
            "sha": lambda: str(values.us.sha1()),
            "isbn": lambda: str(values.us.isbn13()),
            "bad_card": values.bad_card,
            "bad_iban": values.bad_iban,
            "bad_ssn": values.bad_ssn,
            "bad_itin": values.bad_itin,
            "bad_nino": values.bad_nino,
        }
        self.fillers = fillers

    def segments(self, slot: str) -> tuple[list[Segment], str]:
        """The segments for one placeholder, and the kind of value it holds."""
        values = self.values
        if slot.startswith("secret"):
            return values.secret(slot.removeprefix("secret").removeprefix("_") or None)
        if slot == "credit_card":
            number, card_type = values.credit_card()
            return [("credit_card", number)], card_type
        if slot in ("phone", "ip_address", "iban"):
            value, kind = getattr(values, slot)()
            return [(slot, value)], kind
        if slot == "email_plain":
            return [("email", values.email())], "email"
        if slot in ("us_ssn", "us_ssn_bare", "us_itin", "uk_nino"):
            value = getattr(values, slot)()
            style = "bare" if slot.endswith("bare") else "spaced" if " " in value else "compact"
            if "-" in value:
                style = "dashed"
            return [(slot.removesuffix("_bare"), value)], style
        if slot in ENTITIES:
            return [(slot, getattr(values, slot)())], slot
        return [(None, self.fillers[slot]())], ""

    def render(self, template: str) -> list[tuple[list[Segment], str]]:
        parts: list[tuple[list[Segment], str]] = []
        at = 0
        for match in PLACEHOLDER.finditer(template):
            parts.append(([(None, template[at : match.start()])], ""))
            parts.append(self.segments(match.group(1)))
            at = match.end()
        parts.append(([(None, template[at:])], ""))
        return parts

    def prose(self, template: str) -> Sample:
        text: list[str] = []
        spans: list[tuple[str, int, int]] = []
        kinds: dict[int, str] = {}
        length = 0
        for segments, kind in self.render(template):
            for entity, piece in segments:
                if entity is not None:
                    if kind:
                        kinds[len(spans)] = kind
                    spans.append((entity, length, length + len(piece)))
                text.append(piece)
                length += len(piece)
        return Sample("".join(text), spans, "near_miss" if not spans else "prose", kinds)

    def document(self) -> Sample:
        """A JSON document (one of a few shapes) with labelled string values."""
        values = self.values
        shape = values.pick(("crm", "ticket", "config", "chat", "event", "hr"))
        field_value = self.field_value
        doc: dict[str, object]
        if shape == "crm":
            doc = {
                "id": values.rng.randint(1, 10**6),
                "customer": {
                    "name": values.name(),
                    "email": field_value("email"),
                    "phone": field_value("phone"),
                    "ssn": field_value("us_ssn"),
                },
                "payment": {"card": field_value("credit_card"), "iban": field_value("iban")},
                "balance": round(values.rng.uniform(-500, 5000), 2),
                "created_at": values.date(),
                "tags": ["vip", "eu"] if values.rng.random() < 0.5 else [],
            }
        elif shape == "ticket":
            doc = {
                "ticket": values.rng.randint(10000, 99999),
                "subject": f"Problem with order {values.order()}",
                "body": self.render(values.pick(PROSE[values.pick(ENTITIES)])),
                "requester": {"email": field_value("email"), "ip": field_value("ip_address")},
                "priority": values.rng.randint(1, 4),
                "open": True,
            }
        elif shape == "config":
            secret = values.secret
            doc = {
                "service": values.pick(("billing", "search", "ingest")),
                "region": "eu-west-1",
                "replicas": values.rng.randint(1, 12),
                "credentials": {
                    key: [secret(kind, bare=True)]
                    for key, kind in CONFIG_SECRETS
                    if values.rng.random() < 0.4
                },
                "endpoint": f"https://{values.us.domain_name()}/v1",
            }
        elif shape == "chat":
            doc = {
                "conversation": str(values.us.uuid4()),
                "messages": [
                    {
                        "role": "user",
                        "content": self.render(values.pick(PROSE[values.pick(ENTITIES)])),
                    },
                    {"role": "assistant", "content": "Thanks, I have noted that."},
                    {"role": "user", "content": self.render(values.pick(MIXED))},
                ],
                "created": values.rng.randint(1_700_000_000, 1_800_000_000),
            }
        elif shape == "event":
            doc = {
                "event": values.pick(("login", "logout", "password_reset", "export")),
                "user": field_value("email"),
                "source_ip": field_value("ip_address"),
                "request_id": str(values.us.uuid4()),
                "at": values.time(),
                "ok": values.rng.random() < 0.8,
            }
        else:
            doc = {
                "employee_id": values.rng.randint(1000, 99999),
                "name": values.name(),
                "nino": field_value("uk_nino"),
                "itin": field_value("us_itin"),
                "ssn": field_value("us_ssn"),
                "salary": values.rng.randint(20000, 200000),
                "bank": {"iban": field_value("iban")},
            }
        return self.dump(doc)

    def field_value(self, entity: str) -> list[tuple[list[Segment], str]]:
        """A JSON string value that is one labelled entity (secrets bare, without `key=`)."""
        segments, kind = self.segments(entity)
        return [([segment for segment in segments if segment[0] is not None], kind)]

    def dump(self, doc: dict[str, object]) -> Sample:
        ensure_ascii = self.values.rng.random() < 0.5
        indent = self.values.pick(("", "  "))
        text: list[str] = []
        spans: list[tuple[str, int, int]] = []
        kinds: dict[int, str] = {}
        length = 0

        def put(piece: str) -> None:
            nonlocal length
            text.append(piece)
            length += len(piece)

        def emit(value: object, level: int) -> None:
            pad = "\n" + indent * (level + 1) if indent else ""
            end = "\n" + indent * level if indent else ""
            if isinstance(value, dict):
                put("{")
                for n, (key, item) in enumerate(value.items()):
                    put(("," if n else "") + (pad or (" " if n else "")))
                    put(json.dumps(key) + ": ")
                    emit(item, level + 1)
                put(end + "}")
            elif isinstance(value, list) and value and isinstance(value[0], tuple):
                put('"')
                for segments, kind in value:
                    for entity, piece in segments:
                        escaped = json.dumps(piece, ensure_ascii=ensure_ascii)[1:-1]
                        if entity is not None:
                            if kind:
                                kinds[len(spans)] = kind
                            spans.append((entity, length, length + len(escaped)))
                        put(escaped)
                put('"')
            elif isinstance(value, list):
                put("[")
                for n, item in enumerate(value):
                    put(", " if n else "")
                    emit(item, level + 1)
                put("]")
            else:
                put(json.dumps(value, ensure_ascii=ensure_ascii))

        emit(doc, 0)
        source = "".join(text)
        json.loads(source)  # the generator itself is checked: the document must parse
        return Sample(source, spans, "json", kinds)


def corpus(seed: int = 5, size: int = 4000) -> list[Sample]:
    """`size` samples: 60% prose (a fifth of it mixing entities), 20% JSON, 20% near-misses.

    Every entity gets the same share of the single-entity prose, so each has hundreds of
    labelled values at the default size. The same seed gives the same corpus.
    """
    values = Values(seed)
    builder = Builder(values)
    samples: list[Sample] = []
    for n in range(size):
        slot = n % 10
        if slot < 6:
            if values.rng.random() < 0.2:
                template = values.pick(MIXED)
            else:
                template = values.pick(PROSE[ENTITIES[n % len(ENTITIES)]])
            samples.append(builder.prose(template))
        elif slot < 8:
            samples.append(builder.document())
        else:
            samples.append(builder.prose(values.pick(NEAR_MISS)))
    return samples


# --- scoring ----------------------------------------------------------------------------------

Found = tuple[str, int, int]  # (entity, start, end), like a ground-truth span


@dataclass
class Score:
    """One entity's figures over a corpus."""

    labelled: int = 0  # ground-truth spans
    recalled: int = 0  # of them, overlapped by a finding of the same entity
    exact: int = 0  # of them, found with exactly the same start and end
    findings: int = 0  # findings of this entity
    correct: int = 0  # of them, overlapping a ground-truth span of the same entity
    misses: list[tuple[int, str, str]] = field(default_factory=list)  # (sample, kind, value)
    false: list[tuple[int, str]] = field(default_factory=list)  # (sample, found text)

    @property
    def recall(self) -> float:
        return self.recalled / self.labelled if self.labelled else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.findings if self.findings else 1.0

    @property
    def exact_rate(self) -> float:
        return self.exact / self.labelled if self.labelled else 1.0


def evaluate(samples: list[Sample], found: list[list[Found]]) -> dict[str, Score]:
    """Precision, recall and exact-span rate per entity; `found[i]` is for `samples[i]`.

    A finding is correct when a ground-truth span of the same entity overlaps it; a
    ground-truth span is recalled when a finding of the same entity overlaps it.
    """
    scores: dict[str, Score] = {}
    for index, (sample, findings) in enumerate(zip(samples, found, strict=True)):
        for n, (entity, start, end) in enumerate(sample.spans):
            score = scores.setdefault(entity, Score())
            score.labelled += 1
            same = [(s, e) for kind, s, e in findings if kind == entity and s < end and start < e]
            if same:
                score.recalled += 1
                score.exact += (start, end) in same
            else:
                score.misses.append((index, sample.kinds.get(n, ""), sample.text[start:end]))
        for entity, start, end in findings:
            score = scores.setdefault(entity, Score())
            score.findings += 1
            if any(k == entity and s < end and start < e for k, s, e in sample.spans):
                score.correct += 1
            else:
                score.false.append((index, sample.text[start:end]))
    return scores


def table(scores: dict[str, Score], title: str = "") -> str:
    """A markdown table of the scores, one row per entity."""
    lines = [f"\n{title}"] if title else [""]
    lines += [
        "| entity | labelled | recall | precision | exact span | findings | false |",
        "|---|---|---|---|---|---|---|",
    ]
    for entity in sorted(scores, key=lambda name: (name not in ENTITIES, name)):
        s = scores[entity]
        lines.append(
            f"| {entity} | {s.labelled} | {s.recall:.4f} | {s.precision:.4f} | "
            f"{s.exact_rate:.4f} | {s.findings} | {s.findings - s.correct} |"
        )
    return "\n".join(lines)
