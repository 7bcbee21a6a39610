"""The registry of families: who publishes them, where from, and how open each flagship was.

Hub metadata knows authors, not families, and an organisation such as Google publishes far more
than Gemma. The registry is the small piece of curated knowledge that turns repositories and
database rows into families with a country of origin and a licence history. It ships as data
(``data/families.yaml``) so that the team can correct it without a code change, and users can
extend or override it with their own file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from monoculture.ecosystem.countries import normalize_country, region_of
from monoculture.ecosystem.openness import Openness
from monoculture.errors import UserError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ACCESS_KINDS = ("open", "gated-auto", "gated-manual", "api", "none")


@dataclass(frozen=True)
class Flagship:
    name: str
    date: date
    licence: str | None
    access: str
    level: int | None
    params_b: float | None = None
    hub_id: str | None = None
    note: str = ""


@dataclass
class Family:
    key: str
    name: str
    organisations: tuple[str, ...]
    country: str | None
    developer: str = ""
    first_release: date | None = None
    hub_match: re.Pattern | None = None
    epoch_organisation: re.Pattern | None = None
    epoch_match: re.Pattern | None = None
    flagships: list[Flagship] = field(default_factory=list)

    @property
    def region(self) -> str:
        return region_of(self.country)

    def owns_repo(self, model_id: str) -> bool:
        author, _, name = model_id.partition("/")
        if author.lower() not in {o.lower() for o in self.organisations}:
            return False
        return self.hub_match is None or bool(self.hub_match.search(name))

    def owns_epoch_row(self, model: str, organization: str) -> bool:
        organization = organization if isinstance(organization, str) else ""
        model = model if isinstance(model, str) else ""
        if self.epoch_organisation is None or not self.epoch_organisation.search(organization):
            return False
        return self.epoch_match is None or bool(self.epoch_match.search(model))


@dataclass
class Registry:
    families: dict[str, Family]
    openness: Openness
    sources: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.families.values())

    def __len__(self) -> int:
        return len(self.families)

    def get(self, key: str) -> Family:
        try:
            return self.families[key.strip().lower()]
        except KeyError:
            raise UserError(
                f"unknown family {key!r}; known: {', '.join(sorted(self.families))} (add it with --registry FILE)"
            ) from None

    def select(self, keys: str | list[str] | None) -> list[Family]:
        if not keys:
            return list(self.families.values())
        if isinstance(keys, str):
            keys = [k for k in keys.split(",") if k.strip()]
        return [self.get(k) for k in keys]

    def family_of_repo(self, model_id: str | None) -> Family | None:
        if not model_id or "/" not in model_id:
            return None
        for fam in self.families.values():
            if fam.owns_repo(model_id):
                return fam
        return None

    def family_of_epoch(self, model: str, organization: str) -> Family | None:
        for fam in self.families.values():
            if fam.owns_epoch_row(model, organization):
                return fam
        return None

    def organisation_names(self) -> dict[str, str]:
        """Lower-cased Hub author -> family key."""
        return {o.lower(): f.key for f in self.families.values() for o in f.organisations}


def _regex(v: Any, where: str) -> re.Pattern | None:
    if v in (None, ""):
        return None
    try:
        return re.compile(str(v))
    except re.error as e:
        raise UserError(f"bad regular expression {v!r}: {e}", where=where) from None


def _date(v: Any, where: str) -> date | None:
    if v in (None, ""):
        return None
    if isinstance(v, date):
        return v
    try:
        return date.fromisoformat(str(v))
    except ValueError:
        raise UserError(f"bad date {v!r} (use YYYY-MM-DD)", where=where) from None


def _family(key: str, spec: dict, openness: Openness, where: str) -> Family:
    w = f"{where}: families.{key}"
    orgs = spec.get("organisations") or spec.get("organizations") or []
    if isinstance(orgs, str):
        orgs = [orgs]
    if not orgs:
        raise UserError("a family needs at least one Hub organisation (organisations: [...])", where=w)
    flagships = []
    for i, fs in enumerate(spec.get("flagships") or []):
        fw = f"{w}.flagships[{i}]"
        if not isinstance(fs, dict) or "name" not in fs or "date" not in fs:
            raise UserError("a flagship needs at least name and date", where=fw)
        access = str(fs.get("access", "open"))
        if access not in ACCESS_KINDS:
            raise UserError(f"unknown access {access!r}; use one of {', '.join(ACCESS_KINDS)}", where=fw)
        licence = fs.get("licence", fs.get("license"))
        params = fs.get("params_b")
        released = _date(fs["date"], fw)
        if released is None:  # an empty date would make the flagships unsortable later
            raise UserError("a flagship needs a date (YYYY-MM-DD)", where=fw)
        flagships.append(
            Flagship(
                name=str(fs["name"]),
                date=released,
                licence=None if licence is None else str(licence),
                access=access,
                level=openness.level(licence, access),
                params_b=None if params is None else float(params),
                hub_id=fs.get("hub_id"),
                note=str(fs.get("note", "")),
            )
        )
    flagships.sort(key=lambda f: f.date)
    return Family(
        key=key,
        name=str(spec.get("name", key)),
        organisations=tuple(str(o) for o in orgs),
        country=normalize_country(spec.get("country")),
        developer=str(spec.get("developer", "")),
        first_release=_date(spec.get("first_release"), w),
        hub_match=_regex(spec.get("hub_match"), w),
        epoch_organisation=_regex(spec.get("epoch_organisation"), w),
        epoch_match=_regex(spec.get("epoch_match"), w),
        flagships=flagships,
    )


def _read_yaml(path: Path) -> dict:
    from monoculture.files import read_utf8

    try:
        # missing, a folder, bad bytes: one clear line; a BOM is dropped like everywhere else
        data = yaml.load(read_utf8(path, "registry file"), Loader=_LOADER) or {}
    except FileNotFoundError:
        raise UserError("registry file not found", where=str(path)) from None
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {str(e).splitlines()[0]}", where=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("a registry file is a mapping with a `families:` key", where=str(path))
    return data


def load_registry(user_file: str | Path | None = None) -> Registry:
    """The shipped registry, extended or overridden by ``user_file``.

    A user entry whose key matches a shipped family replaces the fields it gives (so a user can
    add one flagship list without restating the organisations); a new key adds a family."""
    shipped = yaml.load(
        resources.files("monoculture.ecosystem").joinpath("data/families.yaml").read_text(encoding="utf-8"), Loader=_LOADER
    )
    specs: dict[str, dict] = {k.lower(): dict(v) for k, v in shipped["families"].items()}
    openness = Openness.default()
    sources = ["monoculture/ecosystem/data/families.yaml"]
    user_keys: set[str] = set()
    if user_file:
        path = Path(user_file)
        data = _read_yaml(path)
        if "licences" in data or "patterns" in data or "epoch_accessibility" in data:
            openness.extend(data, where=str(path))
        fams = data.get("families") or {}
        if not isinstance(fams, dict):
            raise UserError("`families:` must map family keys to entries", where=str(path))
        for key, spec in fams.items():
            if not isinstance(spec, dict):
                raise UserError("a family entry is a mapping", where=f"{path}: families.{key}")
            specs[str(key).lower()] = {**specs.get(str(key).lower(), {}), **spec}
            user_keys.add(str(key).lower())
        sources.append(str(path))
    families = {k: _family(k, v, openness, sources[-1] if k in user_keys else sources[0]) for k, v in specs.items()}
    return Registry(families=families, openness=openness, sources=sources)
