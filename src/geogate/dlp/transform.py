"""What masking offers the rest of the gateway: transforms over text, whole or streamed.

Protocol adapters find the text fields of a body and hand them to a `TextTransform`; they never
detect anything themselves, and the masker never parses a provider format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class MaskingError(Exception):
    """Masking could not be done; the call is refused rather than sent unmasked."""

    code = "data_blocked"


class DataBlocked(MaskingError):
    """The policy says `on_detect: block` and something was found."""

    def __init__(self, entities: Sequence[str]) -> None:
        self.entities = tuple(entities)
        super().__init__(
            f"The text contains {', '.join(self.entities)}, which the policy does not let "
            f"through; remove it and send again."
        )


class TextStream(Protocol):
    """One text arriving in pieces (the deltas of one content block).

    The concatenation of everything `feed` and `finish` return equals the transform applied
    to the whole text, however the text was split.
    """

    def feed(self, text: str) -> str: ...

    def finish(self) -> str: ...


class TextTransform(Protocol):
    def apply(self, texts: Sequence[str]) -> list[str]:
        """Transform a group of fields read as one text (the parts of one message).

        A value split across two fields of the group is found; each field gets its part of
        the result, so the list has the same length.
        """
        ...

    def stream(self) -> TextStream: ...
