"""Finding and masking sensitive data in text, whole or streamed (SPEC §4 `mask`)."""

from geogate.config import BUILTIN_ENTITIES
from geogate.dlp.engine import Engine, Finding, PatternError
from geogate.dlp.masker import Masker, Restorer
from geogate.dlp.transform import DataBlocked, MaskingError, TextStream, TextTransform

__all__ = [
    "BUILTIN_ENTITIES",
    "DataBlocked",
    "Engine",
    "Finding",
    "Masker",
    "MaskingError",
    "PatternError",
    "Restorer",
    "TextStream",
    "TextTransform",
]
