"""Scorers: the properties of a text that a loop's attractors are measured on.

A scorer turns texts into one number each (NaN where it cannot score). The built-in ones follow
Perez et al. 2024 (TelephoneGameLLM): ``length`` (characters), ``positivity`` (VADER compound),
``difficulty`` (Gunning fog, textstat 0.7.3) and ``toxicity`` (Detoxify, or any local
transformers text classifier). Their code removes hashtags (``#word``) from every generation
before it scores any property, so the built-ins do the same (:func:`strip_hashtags`).

Scorers are pluggable the way backends are: a name maps to a class (``BUILTIN``), third-party
packages add names through the ``monoculture.scorers`` entry-point group, and a user names any
function or class as ``module:function`` (a Scorer subclass, a Scorer instance, or a plain
callable from a list of texts to a list of numbers). A name may carry an argument after a
colon: ``positivity:/path/to/vader_lexicon.txt``, ``toxicity:/path/to/local/classifier``.

Each scorer has a ``version`` (the packages and files behind its numbers), which the loop
summary records beside the figures, since a different VADER lexicon or textstat release moves
them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import types
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monoculture.errors import UserError
from monoculture.hashing import text_hash

#: The name of the environment variable naming a VADER lexicon file (NLTK's ``vader_lexicon.txt``)
#: for ``positivity`` when the scorer name does not give one.
VADER_LEXICON_ENV = "MONOCULTURE_VADER_LEXICON"

#: A hashtag as TelephoneGameLLM removes it before scoring (``re.sub(r'#\w+', '', story)``).
HASHTAG = re.compile(r"#\w+")


def strip_hashtags(text: str) -> str:
    """``text`` without its hashtags, exactly as Perez et al.'s code preprocesses a generation."""
    return HASHTAG.sub("", text)


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class Scorer(ABC):
    """One property of a text. ``bounds`` is the property's range (positions are clipped to it),
    None where it has none; ``version`` says what produced the numbers; ``note`` is a caveat a
    reader of the figures must see (the summary lists it)."""

    name: str
    bounds: tuple[float, float] | None = None
    version: str = "unknown"
    note: str = ""

    @abstractmethod
    def score(self, texts: Sequence[str]) -> np.ndarray:
        """One float per text, NaN where the text cannot be scored."""

    def describe(self) -> dict[str, Any]:
        """The scorer as the summary records it (JSON-safe; an infinite bound is None)."""
        bounds = None
        if self.bounds is not None:
            bounds = [None if not np.isfinite(b) else float(b) for b in self.bounds]
        return {"name": self.name, "bounds": bounds, "version": self.version, "note": self.note}


class LengthScorer(Scorer):
    """Characters, hashtags removed (the paper's length)."""

    bounds = (0.0, float("inf"))

    def __init__(self, arg: str = ""):
        if arg:
            raise UserError(f"scorer 'length' takes no argument (got 'length:{arg}')")
        self.name = "length"
        self.version = f"monoculture {_pkg_version('monoculture')}: len() after removing #hashtags"

    def score(self, texts):
        return np.array([len(strip_hashtags(t)) for t in texts], dtype=float)


def _read_vader_lexicon(path: Path) -> dict[str, float]:
    """Check a VADER lexicon file (word TAB mean [TAB ...]) before it is used: a bad line is an
    error naming the file and the line, not a crash inside vaderSentiment."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"VADER lexicon {path} not found (from the positivity scorer's argument or ${VADER_LEXICON_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read VADER lexicon {path}: {e}") from None
    lex: dict[str, float] = {}
    for i, line in enumerate(raw.rstrip("\n").split("\n"), 1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        try:
            if len(parts) < 2:
                raise ValueError("fewer than two tab-separated fields")
            lex[parts[0]] = float(parts[1])
        except ValueError as e:
            raise UserError(f"not a VADER lexicon line (word<TAB>mean<TAB>...): {e}", where=f"{path}:{i}") from None
    if not lex:
        raise UserError(f"VADER lexicon {path} has no entries")
    return lex


def _windowed_analyzer_class():
    """vaderSentiment's analyser with two checks made local. Its ``_negation_check`` and
    ``_special_idioms_check`` lower-case the text's whole word list for every word they look
    at, though they read only the three words before it and the two after: quadratic in the
    text, 8 minutes for the 9,000 TelephoneGame texts. Here each gets just that window, with the
    index moved to match, so every number is the original's (a test compares them exactly)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer as Base

    class WindowedAnalyzer(Base):
        @staticmethod
        def _negation_check(valence, words_and_emoticons, start_i, i):
            lo = max(0, i - 3)  # reads words i-3 .. i-1 (called only for i > start_i)
            return Base._negation_check(valence, words_and_emoticons[lo : i + 1], start_i, i - lo)

        @staticmethod
        def _special_idioms_check(valence, words_and_emoticons, i):
            lo = max(0, i - 3)  # reads words i-3 .. i+2, and whether i+1 and i+2 exist (called for i > 2)
            return Base._special_idioms_check(valence, words_and_emoticons[lo : i + 3], i - lo)

    return WindowedAnalyzer


class PositivityScorer(Scorer):
    """VADER compound score in [-1, 1] through the ``vaderSentiment`` package, which ships its
    lexicon. The paper used NLTK 3.8.1's VADER, whose lexicon NLTK downloads at run time (not
    possible offline); a user who has NLTK's ``vader_lexicon.txt`` names it as the argument or in
    $MONOCULTURE_VADER_LEXICON, and it is loaded into vaderSentiment's analyser. The rules
    (negation, "but", caps, emoji) stay vaderSentiment's: see DEVIATIONS.md."""

    bounds = (-1.0, 1.0)

    def __init__(self, arg: str = ""):
        try:
            SentimentIntensityAnalyzer = _windowed_analyzer_class()
        except ImportError:
            raise UserError("scorer 'positivity' needs vaderSentiment: pip install 'monoculture[loops]'") from None
        self.name = "positivity"
        lexicon = arg or os.environ.get(VADER_LEXICON_ENV, "")
        self.version = f"vaderSentiment {_pkg_version('vaderSentiment')}"
        if lexicon:
            path = Path(lexicon).expanduser().resolve()
            _read_vader_lexicon(path)
            sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            # An absolute path passes through vaderSentiment's os.path.join with its own folder.
            self._sia = SentimentIntensityAnalyzer(lexicon_file=str(path))
            self.version += f", lexicon {path.name} sha256:{sha}"
            self.note = (
                f"VADER rules of vaderSentiment {_pkg_version('vaderSentiment')} with the lexicon {path.name}; "
                "NLTK's analyser differs in its 'but' handling and emoji"
            )
        else:
            self._sia = SentimentIntensityAnalyzer()
            self.version += ", its shipped lexicon"
            self.note = (
                "VADER from the vaderSentiment package, not NLTK 3.8.1's (the paper's): a few lexicon entries and the "
                "handling of 'but' differ, which moves strengths by up to about 0.05 on whole stories; "
                f"name NLTK's vader_lexicon.txt with positivity:<file> or ${VADER_LEXICON_ENV} to use its lexicon"
            )

    def score(self, texts):
        return np.array([self._sia.polarity_scores(strip_hashtags(t))["compound"] for t in texts], dtype=float)


def _import_textstat():
    """textstat 0.7.3 (the paper's, and the last whose syllables come from pyphen, offline)
    imports ``pkg_resources`` to read its easy-word list; setuptools 81 and later no longer ship
    it. When it is missing, a stand-in giving ``resource_stream`` through importlib.resources is
    present only while textstat imports, so nothing else sees a fake ``pkg_resources``."""
    if "textstat" in sys.modules:
        return sys.modules["textstat"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources' own deprecation warning
        have = importlib.util.find_spec("pkg_resources") is not None
        if have:
            import textstat

            return textstat
    shim = types.ModuleType("pkg_resources")

    def resource_stream(package: str, resource: str):
        from importlib.resources import files

        return files(package).joinpath(resource).open("rb")

    shim.resource_stream = resource_stream  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim
    try:
        import textstat
    finally:
        if sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return textstat


class DifficultyScorer(Scorer):
    """Gunning fog index with textstat 0.7.3 and pyphen, as the paper computed it. A text with
    no words scores 0 (textstat's own answer, which the paper's figures include)."""

    bounds = (0.0, float("inf"))

    def __init__(self, arg: str = ""):
        if arg:
            raise UserError(f"scorer 'difficulty' takes no argument (got 'difficulty:{arg}')")
        try:
            self._ts = _import_textstat()
        except ImportError as e:
            raise UserError(
                f"scorer 'difficulty' needs textstat 0.7.3 and pyphen ({e}): pip install 'monoculture[loops]'"
            ) from None
        self.name = "difficulty"
        tv = _pkg_version("textstat")
        self.version = f"textstat {tv}, pyphen {_pkg_version('pyphen')}"
        if tv != "0.7.3":
            self.note = f"Gunning fog from textstat {tv}; the paper used 0.7.3 (later releases count syllables differently)"

    def score(self, texts):
        fog = self._ts.gunning_fog
        return np.array([fog(strip_hashtags(t)) for t in texts], dtype=float)


class ToxicityScorer(Scorer):
    """Probability that a text is toxic, in [0, 1].

    ``toxicity`` (or ``toxicity:detoxify``, ``toxicity:detoxify:<variant>``) uses the Detoxify
    package's ``original`` model, as the paper did; its weights are downloaded on first use, so
    it fails on a machine without internet unless they are cached. ``toxicity:<path>`` wraps any
    transformers sequence-classification model saved in a local folder (for instance a copy of
    a Hub toxicity classifier): the score is the probability of its label named like "toxic"
    (sigmoid for a multi-label or one-logit model, softmax otherwise), or of label 1 for an
    unnamed two-label model. Texts are scored in batches, truncated to the model's input limit."""

    bounds = (0.0, 1.0)
    batch_size = 32

    def __init__(self, arg: str = ""):
        self.name = "toxicity" if not arg else f"toxicity:{arg}"
        self._detox = None
        self._model = None
        if not arg or arg == "detoxify" or arg.startswith("detoxify:"):
            variant = arg.partition(":")[2] or "original"
            try:
                from detoxify import Detoxify
            except ImportError:
                raise UserError(
                    "scorer 'toxicity' needs detoxify (pip install 'monoculture[detoxify]'), "
                    "or name a local transformers classifier: toxicity:<folder>"
                ) from None
            try:
                self._detox = Detoxify(variant, device="cpu")
            except Exception as e:  # the weights are fetched from the internet on first use
                raise UserError(
                    f"detoxify could not load its {variant!r} weights ({type(e).__name__}: {e}); they are downloaded on "
                    "first use, so on a machine without internet name a local classifier instead: toxicity:<folder>"
                ) from None
            self.version = f"detoxify {_pkg_version('detoxify')} {variant}"
            self.name = "toxicity"
            return
        path = Path(arg).expanduser()
        if not path.is_dir():
            raise UserError(f"scorer toxicity:{arg}: no folder {path} (a transformers classifier saved with save_pretrained)")
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError:
            raise UserError(
                "scorer toxicity:<folder> needs transformers and torch: pip install 'monoculture[transformers]'"
            ) from None
        try:
            self._tok = AutoTokenizer.from_pretrained(str(path))
            self._model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
        except (OSError, ValueError) as e:
            raise UserError(f"scorer toxicity:{arg}: not a transformers sequence classifier ({e})") from None
        self._torch = torch
        cfg = self._model.config
        labels = {int(k): str(v) for k, v in (cfg.id2label or {}).items()}
        named = [i for i, n in labels.items() if re.search(r"toxic", n, re.I) and not re.search(r"\b(non|not)", n, re.I)]
        n = int(cfg.num_labels)
        self._sigmoid = n == 1 or cfg.problem_type == "multi_label_classification"
        if named:
            self._index = min(named)  # "toxic" before "severe_toxic" in Detoxify-style label sets
        elif n == 2:
            self._index = 1
        elif n == 1:
            self._index = 0
        else:
            raise UserError(f"scorer toxicity:{arg}: {n} labels ({', '.join(labels.values())}) and none is named toxic")
        digest = hashlib.sha256(repr(sorted(cfg.to_dict().items())).encode()).hexdigest()[:12]
        self.version = f"transformers {_pkg_version('transformers')}, {path.name} (label {labels.get(self._index, self._index)}, config {digest})"
        limit = getattr(self._tok, "model_max_length", 512) or 512
        self._max_len = int(min(limit, getattr(cfg, "max_position_embeddings", limit) or limit, 4096))

    def score(self, texts):
        texts = [strip_hashtags(t) for t in texts]
        if self._detox is not None:
            out = np.empty(len(texts), dtype=float)
            for s in range(0, len(texts), self.batch_size):
                chunk = texts[s : s + self.batch_size]
                out[s : s + len(chunk)] = np.asarray(self._detox.predict(chunk)["toxicity"], dtype=float)
            return out
        torch, model = self._torch, self._model
        assert model is not None
        out = np.empty(len(texts), dtype=float)
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                chunk = texts[s : s + self.batch_size]
                enc = self._tok(chunk, return_tensors="pt", truncation=True, padding=True, max_length=self._max_len)
                logits = model(**enc).logits.float()
                probs = torch.sigmoid(logits) if self._sigmoid else torch.softmax(logits, dim=-1)
                out[s : s + len(chunk)] = probs[:, self._index].numpy()
        return out


class FunctionScorer(Scorer):
    """A user's function from texts to numbers, as a scorer. ``bounds``, ``version`` and
    ``note`` are read from attributes of the function where it has them."""

    def __init__(self, name: str, fn: Callable[[Sequence[str]], Any]):
        self.name = name
        self._fn = fn
        b = getattr(fn, "bounds", None)
        self.bounds = (float(b[0]), float(b[1])) if b is not None else None
        mod = getattr(fn, "__module__", "") or ""
        own = getattr(fn, "version", None)
        self.version = str(own) if own else (f"{mod} {_pkg_version(mod.split('.')[0])}" if mod else "unknown")
        self.note = str(getattr(fn, "note", "") or "")

    def score(self, texts):
        try:
            out = np.asarray(self._fn(list(texts)), dtype=float)
        except (TypeError, ValueError) as e:
            raise UserError(f"scorer {self.name}: its function must return one number per text ({e})") from None
        if out.shape != (len(texts),):
            raise UserError(f"scorer {self.name}: returned shape {out.shape} for {len(texts)} texts (one number per text)")
        return out


#: Built-in scorers: name -> "module:Class". A name's argument (after the first colon) goes to
#: the class.
BUILTIN: dict[str, str] = {
    "length": "monoculture.loops.scorers:LengthScorer",
    "positivity": "monoculture.loops.scorers:PositivityScorer",
    "difficulty": "monoculture.loops.scorers:DifficultyScorer",
    "toxicity": "monoculture.loops.scorers:ToxicityScorer",
}

#: The scorers a loop summary uses unless told otherwise (toxicity needs an optional model).
DEFAULT_SCORERS = ("length", "positivity", "difficulty")


def _plugins() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in entry_points(group="monoculture.scorers")}
    except Exception:  # a broken third-party plugin must not break the tool
        return {}


def available_scorers() -> dict[str, str]:
    """Every scorer name known here: plugins first, built-ins winning a clash."""
    return {**_plugins(), **BUILTIN}


def _load_target(target: str, what: str) -> Any:
    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"scorer {what}: cannot import {module!r} ({e})") from None
    try:
        obj: Any = mod
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UserError(f"scorer {what}: module {module!r} has no {attr!r}") from None
    return obj


def _as_scorer(obj: Any, name: str, arg: str) -> Scorer:
    if isinstance(obj, Scorer):
        return obj
    if isinstance(obj, type) and issubclass(obj, Scorer):
        cls: Any = obj  # built-in scorers take their name's argument; a user class may take none
        sc = cls(arg) if arg else cls()
        if not getattr(sc, "name", None):
            sc.name = name
        return sc
    if callable(obj):
        return FunctionScorer(name, obj)
    raise UserError(f"scorer {name}: {obj!r} is neither a Scorer nor a function of a list of texts")


def get_scorer(name: str | Scorer) -> Scorer:
    """A scorer by name: a built-in or plugin name with an optional ``:argument``, or a user's
    ``module:function`` (or ``module:Class``). A Scorer instance passes through."""
    if isinstance(name, Scorer):
        return name
    name = str(name).strip()
    if not name:
        raise UserError("empty scorer name")
    kind, _, arg = name.partition(":")
    known = available_scorers()
    if kind in known:
        return _as_scorer(_load_target(known[kind], name), name, arg)
    if arg and re.fullmatch(r"[A-Za-z_][\w.]*", kind) and re.fullmatch(r"[A-Za-z_][\w.]*", arg):
        return _as_scorer(_load_target(name, name), name, "")
    raise UserError(f"unknown scorer {name!r}; known: {', '.join(sorted(known))}, or module:function")


def get_scorers(names: Sequence[str | Scorer]) -> list[Scorer]:
    """Several scorers; two with the same name are an error (their columns would clash)."""
    out = [get_scorer(n) for n in names]
    seen: set[str] = set()
    for s in out:
        if s.name in seen:
            raise UserError(f"scorer {s.name!r} named twice")
        seen.add(s.name)
    return out


def score_texts(scorer: Scorer, texts: Sequence[str], cache: dict[tuple[str, str], float] | None = None) -> np.ndarray:
    """Scores of ``texts`` (one per text, in order); each distinct text is scored once, and not
    at all when ``cache`` (keyed by scorer name and text hash) already has it."""
    cache = {} if cache is None else cache
    hashes = [text_hash(t) for t in texts]
    todo: dict[str, str] = {}
    for h, t in zip(hashes, texts):
        if (scorer.name, h) not in cache:
            todo.setdefault(h, t)
    if todo:
        vals = np.asarray(scorer.score(list(todo.values())), dtype=float)
        if vals.shape != (len(todo),):
            raise RuntimeError(f"scorer {scorer.name} returned {vals.shape} scores for {len(todo)} texts")
        for h, v in zip(todo, vals):
            cache[(scorer.name, h)] = float(v)
    return np.array([cache[(scorer.name, h)] for h in hashes], dtype=float)


def score_frame(
    frame: pd.DataFrame, names: Sequence[str | Scorer], *, cache: dict[tuple[str, str], float] | None = None
) -> pd.DataFrame:
    """``frame`` with one float column per scorer (named by the scorer), from its ``text``
    column; a missing text scores NaN. ``cache`` is shared between calls that must not score a
    text twice."""
    out = frame.copy()
    texts = ["" if not isinstance(t, str) else t for t in frame["text"]]
    missing = np.array([not isinstance(t, str) for t in frame["text"]], dtype=bool)
    for s in get_scorers(names):
        vals = score_texts(s, texts, cache)
        vals[missing] = np.nan
        out[s.name] = vals
    return out
