"""Perspective probes: do models answer value-laden questions like one country does?

Models answer the multiple-choice ``values`` suite; each answer becomes a distribution over the
options (first-token probabilities, or k parsed samples), which is compared with countries'
survey shares, with the model's own answers in other languages, and with other models'.

Modules: ``items`` (rendering), ``parser`` (strict answer parsing), ``countries`` (human
reference data), ``runner`` (asking the models, resumably), ``metrics`` and ``analysis`` (the
numbers), ``report_section`` (the report's Perspectives section), ``cli`` (``monoculture probe``).
"""

from monoculture.probes.analysis import PerspectiveResults, analyse, load_results
from monoculture.probes.countries import CountryData, load_countries
from monoculture.probes.items import Item, load_items, render_messages
from monoculture.probes.parser import AnswerParser, Parse, parse_answer
from monoculture.probes.report_section import perspectives_section, standalone_page
from monoculture.probes.runner import run_probe

__all__ = [
    "AnswerParser",
    "CountryData",
    "Item",
    "Parse",
    "PerspectiveResults",
    "analyse",
    "load_countries",
    "load_items",
    "load_results",
    "parse_answer",
    "perspectives_section",
    "render_messages",
    "run_probe",
    "standalone_page",
]
