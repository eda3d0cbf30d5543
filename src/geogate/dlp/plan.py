"""From a policy's `mask` block to what one call masks, with which engine and style.

    plans = compile_masking(config, key)
    call = plans["support-eu"].start(vault)   # per call: counts, and the session's vault
    call.request.apply(["SSN 123-45-6789"])   # ['SSN [US_SSN]']

Engines are compiled once per distinct entity set at start, so a call only builds the small
per-call objects.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from geogate.config import Config, MaskRule
from geogate.dlp.engine import Engine
from geogate.dlp.masker import Chain, Masker, Restorer, Style
from geogate.dlp.transform import TextTransform
from geogate.dlp.vault import Vault
from geogate.files import create_once


@dataclass(frozen=True, slots=True)
class MaskPlan:
    request: Engine | None
    response: Engine | None
    style: Style
    block: bool
    key: bytes
    review: bool = False
    """`on_detect: review`: a request with findings goes, unmasked, only once approved."""

    @property
    def tokenizes(self) -> bool:
        return self.style == "tokenize" and self.request is not None

    def start(self, vault: Vault | None = None) -> CallMasking:
        """The maskers of one call; `tokenize` needs the vault of the caller's session."""
        if self.tokenizes and vault is None:
            vault = Vault(self.key, secrets.token_hex(8))
        request = None
        if self.request is not None:
            request = Masker(self.request, self.style, key=self.key, block=self.block, vault=vault)
        response: TextTransform | None = None
        response_masker = None
        if self.response is not None:
            style: Style = "redact" if self.style == "tokenize" else self.style
            response_masker = Masker(self.response, style, key=self.key, block=self.block)
        recorded: TextTransform | None = response_masker
        if self.tokenizes:
            assert vault is not None
            restorer = Restorer(vault)
            response = restorer if response_masker is None else Chain(response_masker, restorer)
            if self.response is not None:  # its own counts: the caller's reply counts once
                recorded = Masker(self.response, "redact", key=self.key, block=self.block)
        else:
            response = response_masker
        return CallMasking(
            request, response, response_masker, self.tokenizes, recorded, review=self.review
        )


@dataclass(slots=True)
class CallMasking:
    request: Masker | None
    response: TextTransform | None
    response_masker: Masker | None
    restores: bool = False
    """`response` gives the caller back their originals, which the record must not hold:
    the record then keeps the reply as masked (`recorded`), before restoring."""
    recorded: TextTransform | None = None
    review: bool = False
    """`on_detect: review`: findings in the request call for a review, not a mask."""

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for masker in (self.request, self.response_masker):
            if masker is not None:
                for entity, count in masker.counts.items():  # (`+=` copies and filters twice)
                    total[entity] += count
        return total

    def header(self) -> str | None:
        """`x-geogate-masked`: counts per entity, never the values; None when nothing was."""
        counts = self.counts()
        return ",".join(f"{name}={n}" for name, n in sorted(counts.items())) or None


def entities(config: Config, names: list[str]) -> frozenset[str]:
    """Entity and set names, with sets expanded."""
    found: set[str] = set()
    for name in names:
        found.update(config.masking.sets.get(name, [name]))
    return frozenset(found)


def compile_masking(config: Config, key: bytes) -> dict[str, MaskPlan]:
    """A plan per policy that masks."""
    plans: dict[str, MaskPlan] = {}
    for policy in config.policies:
        if policy.mask is not None:
            plans[policy.name] = plan_for(config, policy.mask, key)
    return plans


def plan_for(config: Config, rule: MaskRule, key: bytes) -> MaskPlan:
    def engine(names: list[str]) -> Engine | None:
        chosen = entities(config, names)
        return Engine.build(chosen, config.masking.custom) if chosen else None

    return MaskPlan(
        request=engine(rule.request),
        response=engine(rule.response),
        style=rule.style,
        block=rule.on_detect == "block",
        key=key,
        review=rule.on_detect == "review",
    )


def load_key(path: str) -> bytes:
    """The deployment's masking key (hash and tokenize styles), made on first use.

    Every gateway of one deployment must share it, or the same value hashes differently.
    """
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        create_once(file, (secrets.token_hex(32) + "\n").encode())  # of workers racing, one wins
    return bytes.fromhex(file.read_text().strip())
