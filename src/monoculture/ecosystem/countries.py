"""One spelling per country, and the coarse regions that headline claims use.

Epoch writes "United States of America", the registry writes "United States", AI_Benchmark
writes "Korea (Republic of)". Shares only add up if every source is folded onto one spelling
first. A cell that names several distinct countries (a joint release) becomes "Multinational",
as Epoch itself does, rather than being split: the rows behind every share stay countable.
"""

from __future__ import annotations

from typing import Any

from monoculture.ecosystem.quality import is_missing

ALIASES = {
    "united states of america": "United States",
    "usa": "United States",
    "us": "United States",
    "united states": "United States",
    "united kingdom of great britain and northern ireland": "United Kingdom",
    "uk": "United Kingdom",
    "korea (republic of)": "South Korea",
    "republic of korea": "South Korea",
    "korea": "South Korea",
    "iran (islamic republic of)": "Iran",
    "viet nam": "Vietnam",
    "russian federation": "Russia",
    "uae": "United Arab Emirates",
    "czechia": "Czech Republic",
}

EUROPE = {
    "France",
    "Germany",
    "United Kingdom",
    "Switzerland",
    "Netherlands",
    "Italy",
    "Spain",
    "Sweden",
    "Finland",
    "Denmark",
    "Norway",
    "Austria",
    "Belgium",
    "Poland",
    "Portugal",
    "Ireland",
    "Greece",
    "Hungary",
    "Czech Republic",
    "Croatia",
    "Lithuania",
    "Bulgaria",
    "Ukraine",
    "Luxembourg",
    "Estonia",
    "Latvia",
    "Slovenia",
    "Slovakia",
    "Romania",
}

#: Region keys as in Interconnects' tracked-models ``organization_regions.csv``.
REGION_LABELS = {"us": "United States", "china": "China", "eu": "Europe", "other": "Other", "unknown": "Unknown"}


def normalize_country(raw: Any) -> str | None:
    if is_missing(raw):
        return None
    text = str(raw).strip()
    return ALIASES.get(text.lower(), text)


def country_of_cell(cell: Any) -> str | None:
    """A comma-separated Epoch country cell as one country, or "Multinational"."""
    if is_missing(cell):
        return None
    names = {normalize_country(p) for p in str(cell).split(",")}
    names.discard(None)
    names.discard("")
    if not names:
        return None
    if len(names) == 1:
        return names.pop()
    names.discard("Multinational")
    return names.pop() if len(names) == 1 else "Multinational"


def region_of(country: str | None) -> str:
    """Coarse region key (us, china, eu, other, unknown) for a normalised country."""
    if not country:
        return "unknown"
    if country == "United States":
        return "us"
    if country in ("China", "Hong Kong"):
        return "china"
    if country in EUROPE:
        return "eu"
    if country == "Multinational":
        return "other"
    return "other"
