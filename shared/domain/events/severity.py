"""One severity scale for every source, so policy can compare an MDE alert with a Sentinel incident."""

from __future__ import annotations

SEVERITIES = ("Informational", "Low", "Medium", "High", "Unknown")

# Lower-cased source spellings -> our scale. MDE says "UnSpecified", Graph says "unknown" (and
# "unknownFutureValue" for values newer than the client); Sentinel and the rest say the four words.
_BY_SOURCE_SPELLING: dict[str, str] = {
    "informational": "Informational",
    "low": "Low",
    "medium": "Medium",
    "high": "High",
    "unknown": "Unknown",
    "unspecified": "Unknown",
    "unknownfuturevalue": "Unknown",
}


def normalise_severity(value: object) -> str | None:
    """A source severity on our scale (``Informational|Low|Medium|High|Unknown``).

    ``None`` when the event carries no severity (absent or blank); ``Unknown`` when it carries one
    we cannot place (e.g. ``Critical`` or a number), so policy can tell "not said" from "not known".
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return "Unknown"
    key = value.strip().lower()
    if not key:
        return None
    return _BY_SOURCE_SPELLING.get(key, "Unknown")
