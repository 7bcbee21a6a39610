"""The ordered openness scale that licence-tightening is measured on.

A licence alone does not say how open a release is: Llama weights sit under a restricted licence
*and* behind manual approval, and an API-only flagship has no licence at all. So a release gets
the most closed of two levels, its licence level and its access level, on one ordered scale
(permissive < restricted < non-commercial < gated < api-only). The scale and the licence table
are data (``data/licences.yaml``) so that users can extend them without touching code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from monoculture.ecosystem.quality import Tally, is_missing

LEVELS = ("permissive", "restricted", "non-commercial", "gated", "api-only")
API_ONLY = LEVELS.index("api-only")


def level_name(level: int | None) -> str:
    return "unknown" if level is None else LEVELS[level]


def level_index(name: str, *, where: str = "") -> int:
    from monoculture.errors import UserError

    key = str(name).strip().lower()
    if key not in LEVELS:
        raise UserError(f"unknown openness level {name!r}; use one of {', '.join(LEVELS)}", where=where or None)
    return LEVELS.index(key)


def is_open_weight(level: int | None) -> bool:
    """Weights can be obtained in some form (even if gated): everything below api-only."""
    return level is not None and level < API_ONLY


def _norm(licence: str) -> str:
    return re.sub(r"\s+", "-", str(licence).strip().lower())


@dataclass
class Openness:
    """Licence, access and Epoch-accessibility tables mapped onto the scale."""

    licences: dict[str, int] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern, int]] = field(default_factory=list)
    epoch: dict[str, int] = field(default_factory=dict)
    access: dict[str, int] = field(default_factory=dict)
    meanings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def default(cls) -> Openness:
        text = resources.files("monoculture.ecosystem").joinpath("data/licences.yaml").read_text(encoding="utf-8")
        o = cls()
        o.extend(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)), where="licences.yaml")
        return o

    def extend(self, spec: dict[str, Any], *, where: str = "") -> None:
        """Add or override entries from a mapping shaped like ``data/licences.yaml``."""
        for lv in spec.get("levels") or []:
            if isinstance(lv, dict) and "name" in lv:
                self.meanings[str(lv["name"])] = str(lv.get("meaning", ""))
        for level, ids in (spec.get("licences") or {}).items():
            li = level_index(level, where=where)
            for lic in ids or []:
                self.licences[_norm(lic)] = li
        new_patterns = []
        for p in spec.get("patterns") or []:
            new_patterns.append((re.compile(str(p["match"]), re.I), level_index(p["level"], where=where)))
        self.patterns = new_patterns + self.patterns  # user patterns win
        for k, level in (spec.get("epoch_accessibility") or {}).items():
            self.epoch[str(k).strip().lower()] = level_index(level, where=where)
        for k, level in (spec.get("access") or {}).items():
            self.access[str(k)] = level_index(level, where=where)

    def licence_level(self, licence: Any, tally: Tally | None = None, item: str = "") -> int | None:
        if is_missing(licence):
            return None
        if isinstance(licence, (list, tuple)):
            levels = [self.licence_level(x, tally, item) for x in licence]
            known = [lv for lv in levels if lv is not None]
            return max(known) if known else None
        key = _norm(licence)
        if key in self.licences:
            return self.licences[key]
        if key in ("other", "unknown", "unlicensed", "none", "n/a"):
            if tally is not None:
                tally.add("unknown_licence", item, licence)
            return None
        for rx, lv in self.patterns:
            if rx.search(str(licence)):
                return lv
        if tally is not None:
            tally.add("unknown_licence", item, licence)
        return None

    def access_level(self, access: str | None) -> int:
        return self.access.get(access or "open", 0)

    def level(self, licence: Any, access: str | None = "open", tally: Tally | None = None, item: str = "") -> int | None:
        """Most closed of licence and access; unknown if the licence is unknown and access adds nothing."""
        acc = self.access_level(access)
        lic = self.licence_level(licence, tally, item)
        if lic is None:
            return acc if acc > 0 else None
        return max(lic, acc)

    def epoch_level(self, accessibility: Any) -> int | None:
        if is_missing(accessibility):
            return None
        return self.epoch.get(str(accessibility).strip().lower())


def hub_access(gated: Any) -> str:
    """The Hub's ``gated`` field as an access kind (``False``, ``"auto"``, ``"manual"``, ``True``)."""
    if gated in (None, False, "false", "False", 0, ""):
        return "open"
    if str(gated).lower() == "manual":
        return "gated-manual"
    return "gated-auto"
