import gzip
import math

import numpy as np
import pytest

from monoculture.metrics.lexical import (
    compression_ratio,
    lexical_summary,
    lexical_table,
    ngram_diversity,
    self_repetition,
)
from monoculture.metrics.segment import tokenize


def test_nothing_in_common():
    texts = ["alpha beta gamma delta epsilon", "zeta eta theta iota kappa", "lambda mu nu xi omicron"]
    s = lexical_summary(texts)
    for n in (1, 2, 3, 4):
        assert s[f"ngram_div_{n}"] == 1.0
    assert s["ngram_div_mean"] == 1.0
    assert s["self_repetition"] == 0.0


def test_hand_counted_set():
    texts = ["the cat sat on the mat", "the cat sat on a hat"]
    # 1-grams: 12 total; distinct {the,cat,sat,on,mat,a,hat} = 7
    assert ngram_diversity(texts, 1) == pytest.approx(7 / 12)
    # 2-grams: 10 total; distinct: the cat, cat sat, sat on, on the, the mat, on a, a hat = 7
    assert ngram_diversity(texts, 2) == pytest.approx(7 / 10)
    # 4-grams: "the cat sat on" shared; text 1: 3 four-grams, 1 shared; text 2: 1 shared
    assert ngram_diversity(texts, 4) == pytest.approx(5 / 6)
    assert self_repetition(texts) == pytest.approx(math.log(2))
    raw = "\n".join(texts).encode()
    assert compression_ratio(texts) == pytest.approx(len(raw) / len(gzip.compress(raw, 9, mtime=0)))


def test_counts_distinct_4grams_once_per_text():
    texts = ["a b c d a b c d", "a b c d"]
    # text 1's distinct 4-grams: abcd, bcda, cdab, dabc -> one shared (abcd); text 2: abcd shared
    assert self_repetition(texts) == pytest.approx(math.log(2))


def test_undefined_values_are_missing_not_zero_or_one():
    s = lexical_summary(["just three words", "two words"])
    assert s["ngram_div_1"] == pytest.approx(4 / 5)
    assert math.isnan(s["ngram_div_4"])  # no text has 4 tokens
    assert math.isnan(s["ngram_div_mean"])
    single = lexical_summary(["one text with more than four words"])
    assert math.isnan(single["self_repetition"])  # no other text to repeat
    empty = lexical_summary([])
    assert math.isnan(empty["compression_ratio"]) and math.isnan(empty["ngram_div_1"])


def test_repetitive_set_compresses_more():
    same = ["the quick brown fox jumps over the lazy dog"] * 10
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(500)]
    varied = [" ".join(rng.choice(words, 9)) for _ in range(10)]
    assert compression_ratio(same) > 2 * compression_ratio(varied)
    assert lexical_summary(same)["ngram_div_4"] == pytest.approx(6 / 60)
    assert lexical_summary(same)["self_repetition"] == pytest.approx(math.log(7))


def test_table_matches_per_set_summaries():
    texts = ["a b c d e", "a b c x y", None, "p q r s t u", "a b"]
    sets = np.array([0, 0, 0, 1, -1])
    t = lexical_table(texts, [sets])[0]
    assert t.loc[0, "texts"] == 2 and t.loc[1, "texts"] == 1
    first = lexical_summary(texts[:2])
    for k, v in first.items():
        assert t.loc[0, k] == pytest.approx(v, nan_ok=True)


def test_nested_and_crossed_partitions_agree_with_single_sets():
    rng = np.random.default_rng(3)
    words = ["a", "b", "c", "d", "e", "f"]
    texts = [" ".join(rng.choice(words, rng.integers(2, 9))) for _ in range(12)]
    model = np.repeat([0, 1, 2], 4)  # nested: model > (model, pair)
    cell = ((np.arange(12) % 4) // 2) * 3 + model  # numbered prompt-major, as the pipeline does
    crossed = np.arange(12) % 3  # not nested in either: needs its own ordering
    crossed[5] = -1
    tables = lexical_table(texts, [model, cell, crossed])
    for sid, table in zip([model, cell, crossed], tables):
        for s in range(table.shape[0]):
            expect = lexical_summary([t for t, x in zip(texts, sid) if x == s])
            for k, v in expect.items():
                assert table.loc[s, k] == pytest.approx(v, nan_ok=True), (s, k)


def test_self_repetition_ignores_texts_too_short_to_repeat():
    assert math.isnan(self_repetition(["Paris"] * 10))  # no 4-gram anywhere: missing, not 0
    texts = ["the cat sat on the mat", "the cat sat on a hat", "yes"]
    assert self_repetition(texts) == pytest.approx(math.log(2))  # "yes" does not pull it to 2/3


def reference_figures(texts):
    """METRICS.md read literally: Python sets and Counters, one set of texts at a time."""
    from collections import Counter

    toks = [tokenize(t) for t in texts]  # the units themselves are tested in test_segment.py
    out = {}
    for n in (1, 2, 3, 4):
        grams = [tuple(t[i : i + n]) for t in toks for i in range(len(t) - n + 1)]
        out[f"ngram_div_{n}"] = len(set(grams)) / len(grams) if grams else math.nan
    sets = [{tuple(t[i : i + 4]) for i in range(len(t) - 3)} for t in toks]
    seen = Counter(g for s in sets for g in s)
    scores = [math.log1p(sum(seen[g] >= 2 for g in s)) for s in sets if s]
    out["self_repetition"] = float(np.mean(scores)) if len(texts) >= 2 and scores else math.nan
    raw = "\n".join(texts).encode()
    out["compression_ratio"] = len(raw) / len(gzip.compress(raw, 9, mtime=0)) if raw else math.nan
    return out


@pytest.mark.parametrize("pack_limit", [None, 1000])
def test_table_matches_a_literal_implementation(monkeypatch, pack_limit):
    # pack_limit forces the path that renumbers n-grams too large to pack with the text number.
    from monoculture.metrics import lexical

    if pack_limit is not None:
        monkeypatch.setattr(lexical, "_INT64_MAX", pack_limit)
    rng = np.random.default_rng(7)
    words = [
        "the",
        "cat",
        "Sat",
        "on",
        "mat",
        "don't",
        "rock’n’roll",
        "Ünïcode",
        "x_y",
        "42",
        "a",
        "灯塔",
        "看守人在最后一夜",
        "東京に",
        "ไปเที่ยว",
        "प्रकाशस्तंभ",
        "तंभ",
        "تُدار",
        "habari",
        "🙂",
    ]
    texts = [" ".join(rng.choice(words, rng.integers(0, 14))) + rng.choice(["", ".", " !", "''"]) for _ in range(60)]
    model = rng.integers(0, 4, 60)
    cell = model * 5 + rng.integers(0, 5, 60)
    crossed = rng.integers(-1, 3, 60)
    tables = lexical_table(texts, [model, cell, crossed], [4, 20, 3])
    for sid, table in zip([model, cell, crossed], tables):
        for s in range(table.shape[0]):
            members = [t for t, x in zip(texts, sid) if x == s]
            for k, v in reference_figures(members).items():
                assert table.loc[s, k] == pytest.approx(v, nan_ok=True, rel=1e-12), (s, k)


def test_repetitive_chinese_reads_repetitive():
    # Answers built from the same eight phrases, as an English set of the same build would be.
    # Written without spaces, each clause was one \w+ token and nearly every clause differs,
    # so n-gram diversity came out at 0.98-1.0; in character units it is well below 1.
    rng = np.random.default_rng(0)
    zh = ["灯塔", "看守人", "最后一夜", "大海", "灯光", "照亮", "归途", "水手"]
    en = ["lighthouse", "keeper", "last night", "sea", "lamp light", "shines on", "way home", "sailors"]
    build = [[rng.choice(8, 3) for _ in range(10)] for _ in range(5)]
    zh_set = ["，".join("".join(zh[i] for i in clause) for clause in text) + "。" for text in build]
    en_set = [", ".join(" ".join(en[i] for i in clause) for clause in text) + "." for text in build]
    z, e = lexical_summary(zh_set), lexical_summary(en_set)
    assert z["ngram_div_mean"] < 0.4 and e["ngram_div_mean"] < 0.5
    assert z["ngram_div_1"] < 0.1 and z["ngram_div_4"] < 0.6
    assert z["self_repetition"] > 2
    # Two unrelated Chinese passages share almost no character 4-gram.
    apart = lexical_summary(
        [
            "灯塔看守人在最后一夜爬上螺旋楼梯，擦亮那盏陪伴他三十年的灯。海风从破旧的窗缝里钻进来。",
            "清晨，祖母总是先烧一壶开水，把茶叶放进那只有裂纹的白瓷壶里。她说好茶要等。",
        ]
    )
    assert apart["ngram_div_4"] > 0.95 and apart["self_repetition"] == 0.0


@pytest.mark.parametrize(
    "text, n_units",
    [
        ("Swahili: habari ya asubuhi rafiki", 5),
        ("प्रकाशस्तंभ के रखवाले", 3),  # \w+ made 8 tokens of it
        ("قبل أن تُدار المنارة آليًا", 5),  # \w+ made 7
        ("灯塔看守人", 5),  # \w+ made 1
    ],
)
def test_token_counts_in_the_table_are_word_units(text, n_units):
    assert lexical_summary([text])["tokens"] == n_units
