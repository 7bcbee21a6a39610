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


@pytest.mark.parametrize("tiny_tables", [False, True])
def test_table_matches_a_literal_implementation(monkeypatch, tiny_tables):
    # tiny_tables starts every compiled hash table at its smallest, so that the vocabulary
    # doubles many times and n-gram tables overflow and are redone larger.
    from monoculture.metrics import lexical

    if tiny_tables:
        monkeypatch.setattr(lexical, "_VOCAB_SLOTS", 2)
        monkeypatch.setattr(lexical, "_FIRST_GRAMS", 1)
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


# ---------------------------------------------------------------- compiled path against the numpy one
# lexical_reference.py is the implementation before the compiled kernels, kept verbatim: the
# figures must stay the same to the bit, NaN included, and so must the token numbers (both
# number words in order of first occurrence).

MIXED = [
    "“The” cat — don't café on a mat",  # non-ASCII first: its words are numbered before the ASCII texts'
    "The cat sat on the mat.",
    "the CAT sat on a hat",
    None,
    "",
    "   ",
    "one",
    "'tis the season, isn't it' - 'quoted' words'' and a trailing apostrophe'",
    "don't stop 'til it's done ' '' x'y'z a_b __init__ 42 3.14 x''y",
    "Ünïcode café naïve Ångström ÉCOLE élève",
    "प्रकाशस्तंभ के रखवाले ने दीप जलाया प्रकाशस्तंभ के रखवाले",
    "灯塔看守人在最后一夜爬上螺旋楼梯。灯塔看守人",
    "東京に行きます ไปเที่ยว",
    "🙂 smile 🙂 smile 𠀀𠀁 emoji 👍🏽 after",
    "rock’n’roll isn’t dead, rock'n'roll",
    "a b c d a b c d",
    "a b c d",
    "Swahili: habari ya asubuhi rafiki, habari",
    "tab\tseparated\nnew line\r\nand\x00nul bytes",
    "single",
    "x'y",
    "'a a' it's",
    "it's them the then thee t th",
    "the them then thee",
    "قبل أن تُدار المنارة آليًا",
    "MiXeD CaSe mixed case MIXED CASE",
    "the mat, the hat – it's a b c d",  # ASCII words in a non-ASCII text, after the ASCII ones
]


def _compare_with_reference(texts, set_ids, n_sets=None):
    import lexical_reference as ref

    ours = lexical_table(texts, set_ids, n_sets)
    theirs = ref.lexical_table(texts, set_ids, n_sets)
    for a, b in zip(ours, theirs):
        assert list(a.columns) == list(b.columns)
        for col in a.columns:
            x, y = a[col].to_numpy(), b[col].to_numpy()
            assert x.dtype == y.dtype, col
            assert np.array_equal(x, y, equal_nan=True), (col, np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y)))))
    return ours


@pytest.mark.parametrize("tables", ["as in use", "tiny", "every key colliding"])
def test_compiled_path_equals_the_numpy_one_on_a_mixed_corpus(monkeypatch, tables):
    # "tiny" makes the tables grow and redo; "every key colliding" masks the hashes to 0, so
    # that only the comparisons of words' bytes and n-grams' keys keep them apart.
    import lexical_reference as ref

    from monoculture.metrics import lexical

    if tables == "tiny":
        monkeypatch.setattr(lexical, "_VOCAB_SLOTS", 2)
        monkeypatch.setattr(lexical, "_FIRST_GRAMS", 1)
    if tables == "every key colliding":
        monkeypatch.setattr(lexical, "_WORD_HASH_KEEP", np.uint64(0))
        monkeypatch.setattr(lexical, "_SLOT_KEEP", 0)
    rng = np.random.default_rng(11)
    texts = MIXED * 3 + [None if x is None else x.upper() for x in MIXED]
    n = len(texts)
    has = np.array([isinstance(t, str) for t in texts])
    tok, lens, V = lexical._tokenize_all(texts, has)
    tok_ref, lens_ref, V_ref = ref._tokenize_all(texts, has)
    assert np.array_equal(tok, tok_ref) and np.array_equal(lens, lens_ref) and V == V_ref
    one_set = np.zeros(n, dtype=np.int64)
    each = np.arange(n)
    model = rng.integers(0, 5, n)
    cell = model * 4 + rng.integers(0, 4, n)
    crossed = rng.integers(-1, 3, n)
    _compare_with_reference(texts, [one_set, each, model, cell, crossed])
    _compare_with_reference(texts, [model], [7])  # sets without texts
    _compare_with_reference([], [np.zeros(0, dtype=np.int64)], [2])
    _compare_with_reference([None, "", "x"], [np.array([0, 0, 1])])


def test_compiled_tokens_are_the_tokenisers_words():
    # Word by word, not only up to numbering: the vocabulary's bytes decode to the strings
    # segment.tokenize returns, for ASCII texts (scanned) and the rest (tokenised in Python).
    from monoculture.metrics import lexical
    from monoculture.metrics.lexical_fast import scan_tokens

    texts = MIXED + [None if x is None else x.swapcase() for x in MIXED]
    has = np.array([isinstance(t, str) for t in texts])
    buf, bounds, modes = lexical._token_buffer(texts, has)
    assert modes.sum() == sum(isinstance(t, str) and not t.isascii() for t in texts)
    tok, lens, V, start, size = scan_tokens(buf, bounds, modes, 4, np.uint64(0))  # every word colliding
    words = [bytes(buf[a : a + k]).decode("utf-8") for a, k in zip(start, size)]
    assert len(set(words)) == V  # one number per word
    expect = [w for t in texts if isinstance(t, str) for w in tokenize(t)]
    assert [words[i] for i in tok] == expect
    # Both paths feed one vocabulary: words met in scanned ASCII texts and in tokenised others.
    scanned = {w for t in texts if isinstance(t, str) and t.isascii() for w in tokenize(t)}
    others = {w for t in texts if isinstance(t, str) and not t.isascii() for w in tokenize(t)}
    assert {"the", "cat", "don't", "it's", "a", "b"} <= scanned & others
    assert lens.tolist() == [len(tokenize(t)) if isinstance(t, str) else 0 for t in texts]


def test_ascii_tables_are_pythons():
    # The scanner's idea of \\w and of lowercasing, for every ASCII character, is re's and str's.
    import re

    from monoculture.metrics.lexical_fast import LOWER_BYTE, WORD_BYTE

    for c in range(128):
        assert bool(WORD_BYTE[c]) == bool(re.fullmatch(r"\w", chr(c))), c
        assert chr(LOWER_BYTE[c]) == chr(c).lower(), c


try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the dev extra
    given = None

if given is not None:

    @given(st.lists(st.text(alphabet="aZ9_' ’\t\n.-\x00éकि灯🙂", max_size=30), max_size=8))
    def test_compiled_tokens_match_on_generated_texts(texts):
        from monoculture.metrics import lexical
        from monoculture.metrics.lexical_fast import scan_tokens

        has = np.ones(len(texts), dtype=bool)
        buf, bounds, modes = lexical._token_buffer(texts, has)
        tok, lens, V, start, size = scan_tokens(buf, bounds, modes, 2, np.uint64(2**64 - 1))
        words = [bytes(buf[a : a + k]).decode("utf-8") for a, k in zip(start, size)]
        assert [words[i] for i in tok] == [w for t in texts for w in tokenize(t)]
        assert lens.tolist() == [len(tokenize(t)) for t in texts]
        if texts:
            _compare_with_reference(texts, [np.arange(len(texts)) % 2, np.zeros(len(texts), dtype=np.int64)])


def test_sets_must_be_contiguous_for_the_kernel():
    from monoculture.metrics.lexical_fast import count_level

    tok = np.arange(6, dtype=np.int64)
    lens = np.array([2, 2, 2])
    off = np.array([0, 2, 4])
    with pytest.raises(ValueError, match="contiguous"):
        count_level(tok, off, lens, np.arange(3), np.array([0, 1, 0]), 2, 16, -1)
    total, distinct, shared = count_level(tok, off, lens, np.arange(3), np.array([0, -1, 0]), 2, 16, -1)
    assert total[0].tolist() == [4, 0] and distinct[1].tolist() == [2, 0]
    # numba does not check bounds, so a set number >= S must be refused, not written past the end.
    with pytest.raises(ValueError, match="below the number of sets"):
        count_level(tok, off, lens, np.arange(3), np.array([0, 0, 2]), 2, 16, -1)


def test_set_numbers_must_fit_n_sets():
    with pytest.raises(ValueError, match="below 2"):
        lexical_table(["a b", "c d", "e f"], [np.array([0, 1, 2])], [2])
    with pytest.raises(ValueError, match="per text"):
        lexical_table(["a b", "c d", "e f"], [np.array([0, 1])], [2])


def test_texts_left_out_inside_a_shared_pass():
    # One level uses every text and a nested one leaves some out (-1): the two share a text
    # order, so the kernel meets -1 entries before a set's first text and between its texts,
    # at every n-gram order and in the count of shared 4-grams.
    rng = np.random.default_rng(5)
    words = ["a", "b", "c", "d", "e", "ä", "灯"]
    texts = [" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(40)]
    model = np.repeat(np.arange(4), 10)
    cell = model * 3 + rng.integers(0, 3, 40)
    cell[rng.random(40) < 0.3] = -1
    cell[0] = -1
    from monoculture.metrics.lexical import _passes

    uses = [np.ones(40, dtype=bool), cell >= 0]
    assert [levels for _, levels in _passes([model, cell], uses)] == [[0, 1]]  # one shared pass
    _compare_with_reference(texts, [model, cell], [4, 12])


@pytest.mark.slow
def test_compiled_path_equals_the_numpy_one_on_alpaca_eval(shared_data, monkeypatch):
    """Every figure at both levels the measure step reports (per model, per model and
    prompt), on the real AlpacaEval answers: 28 models x 805 prompts, 31 MB. Compression is
    the same code on both sides and the slowest part (gzip -9 of 31 MB, twice per side), so
    here both get the same stand-in for it."""
    import json

    import lexical_reference as ref

    from monoculture.metrics import lexical

    def stand_in(members):
        return np.array([float(len(m)) for m in members])

    monkeypatch.setattr(lexical, "_compression_ratios", stand_in)
    monkeypatch.setattr(ref, "_compression_ratios", stand_in)

    files = sorted((shared_data / "alpaca_eval" / "results").glob("*/model_outputs.json"))
    if not files:
        pytest.skip(f"no AlpacaEval outputs under {shared_data / 'alpaca_eval' / 'results'}")
    texts, model = [], []
    for m, f in enumerate(files):
        for rec in json.loads(f.read_text()):
            texts.append(rec["output"] or "")
            model.append(m)
    model = np.array(model)
    assert any(not t.isascii() for t in texts) and any(t.isascii() for t in texts)  # both paths
    tables = _compare_with_reference(texts, [model, np.arange(len(texts))], [len(files), len(texts)])
    assert np.isfinite(tables[0]["self_repetition"]).all()
