"""Distinct answers in scripts written without spaces: the short-answer rule counts word units,
not whitespace-separated words (METRICS.md, "Distinct answers"; DEVIATIONS.md)."""

from __future__ import annotations

import numpy as np
import pytest

from monoculture.importers import Imported, import_records
from monoculture.measure import measure
from monoculture.metrics.partition import is_short, normalise_words
from monoculture.store import Store

# Two answers of about 200 characters, and their English counterparts, with the words that
# the near-identical variants change.
ZH = [
    (
        "灯塔看守人在最后一夜爬上螺旋楼梯，擦亮那盏陪伴他三十年的灯。海风从破旧的窗缝里钻进来，带着咸味和远方渔船的汽笛声。"
        "他想起第一次点灯时双手发抖，想起暴风雨中被灯光引回港口的水手们。明天机器就会接管一切，不再需要有人守夜。"
        "他在日志上写下最后一行字：愿光继续照亮归途。然后他坐在灯下，静静等待黎明的到来，直到第一缕阳光落在平静的海面上，"
        "海鸥从礁石上飞起，新的一天开始了。他把钥匙挂回墙上，轻轻关上了门。再见了。"
    ),
    (
        "清晨，祖母总是先烧一壶开水，把茶叶放进那只有裂纹的白瓷壶里。她说好茶要等，水太烫会苦，太凉又没有香气。"
        "茶叶慢慢舒展开来，屋子里飘满淡淡的清香。我们围坐在木桌旁，听她讲年轻时在山上采茶的故事：天还没亮就出门，"
        "露水打湿了衣袖，手指被茶汁染成绿色。如今她已经走了，可每当我泡茶的时候，总觉得她还坐在身边，轻声提醒我别着急，"
        "慢慢来，好茶总是值得等待的。窗外的竹叶沙沙作响，像在回答她的话。茶凉了，我又续上一杯。"
    ),
]
ZH_EDITS = [
    ("三十", "二十"),
    ("静静", "默默"),
    ("平静", "宁静"),
    ("轻轻", "慢慢"),
    ("清晨", "早上"),
    ("淡淡", "浓浓"),
    ("轻声", "小声"),
    ("木桌", "竹桌"),
]
EN = [
    (
        "On his last night the lighthouse keeper climbed the spiral stairs and polished the lamp that had kept him company "
        "for thirty years. The sea wind slipped through the cracked window, carrying salt and the horns of distant fishing "
        "boats. Tomorrow the machines would take over and nobody would need to keep watch. He wrote one final line in the "
        "log, may the light keep guiding them home, and quietly waited for the dawn on the calm sea."
    ),
    (
        "Every morning my grandmother boiled a kettle first and put the leaves into the cracked white porcelain pot. She "
        "said good tea must wait: water too hot turns it bitter, too cool leaves it without fragrance. We sat around the "
        "wooden table while she told stories of picking tea on the mountain when she was young, her sleeves wet with dew, "
        "and softly reminded us not to hurry."
    ),
]
EN_EDITS = [
    ("thirty", "twenty"),
    ("quietly", "silently"),
    ("calm", "still"),
    ("final", "last"),
    ("morning", "dawn"),
    ("wooden", "bamboo"),
    ("softly", "gently"),
    ("bitter", "harsh"),
]


def near_copies(text: str, edits, k: int = 5) -> list[str]:
    """The text and k - 1 variants, each with one small edit."""
    out = [text] + [text.replace(a, b) for a, b in edits if a in text]
    assert len(out) >= k and len(set(out[:k])) == k
    return out[:k]


def unrelated(rng, pool: list[str], k: int = 5, size: int = 200, sep: str = "") -> list[str]:
    """k texts drawn at random from a small pool of units: sharing units, saying different things."""
    return [sep.join(rng.choice(pool, size)) for _ in range(k)]


def distinct_k(tmp_path, name: str, copies: list[list[str]], varied: list[list[str]], tau: float) -> dict[str, float]:
    """distinct_k per model from ``measure`` (the CLI's path) with the tfidf embedder."""
    recs = []
    for p, (same, other) in enumerate(zip(copies, varied)):
        for i in range(5):
            recs.append(Imported("copier", f"p{p}", f"prompt {p}", same[i], sample_index=i))
            recs.append(Imported("varied", f"p{p}", f"prompt {p}", other[i], sample_index=i))
    with Store(tmp_path / f"{name}.duckdb") as st:
        import_records(st, recs, "jsonl")
        s = measure(st, embedder="tfidf", tau=tau, n_boot=20, show_progress=False).summary
    return {m: s["distinct_k"][m]["value"] for m in ("copier", "varied")}


@pytest.mark.parametrize("tau", [0.6, 0.8])
def test_near_identical_chinese_answers_are_one_answer(tmp_path, tau):
    assert all(len(t) >= 200 and len(t.split()) == 1 for t in ZH)
    rng = np.random.default_rng(0)
    zh_pool = sorted(set("".join(ZH)) - set("，。："))[:25]
    en_pool = sorted({w.strip(".,:").lower() for t in EN for w in t.split()})[:25]
    en = distinct_k(
        tmp_path, "en", [near_copies(t, EN_EDITS) for t in EN], [unrelated(rng, en_pool, size=40, sep=" ") for _ in EN], tau
    )
    zh = distinct_k(tmp_path, "zh", [near_copies(t, ZH_EDITS) for t in ZH], [unrelated(rng, zh_pool) for _ in ZH], tau)
    assert en == {"copier": 1.0, "varied": 5.0}
    # Counted by whitespace, every Chinese answer was "one word", so the five were compared by
    # exact text and came out as 5 distinct answers.
    assert zh == {"copier": 1.0, "varied": 5.0}


def test_short_rule_counts_units():
    assert not is_short(ZH[0]) and not is_short("灯塔看守人在最后一夜")  # 10 units
    assert is_short("巴黎。") and normalise_words("巴黎。") == normalise_words(" 巴黎 ") == ("巴", "黎")
    assert normalise_words("北京") != normalise_words("东京")
    assert is_short("नई दिल्ली") and normalise_words("नई दिल्ली!") == ("नई", "दिल्ली")
    assert is_short("Nairobi, Kenya.") and not is_short("Mji mkuu wa Kenya ni Nairobi")
    assert normalise_words("Don’t") == normalise_words("don't")
    # No word unit at all: the folded text decides, so different emoji are different answers.
    assert normalise_words("🙂") != normalise_words("👍") and normalise_words(" 🙂 ") == normalise_words("🙂")
