"""Word units in every script of the suites (metrics/segment.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monoculture.metrics.segment import tokenize

SUITE = Path(__file__).resolve().parents[2] / "src" / "monoculture" / "suites" / "data" / "multilingual.jsonl"


@pytest.mark.parametrize(
    "text, units",
    [
        ("The keeper's LAST night, rock’n’roll x_y 42.", ["the", "keeper's", "last", "night", "rock’n’roll", "x_y", "42"]),
        ("Habari ya asubuhi, rafiki yangu!", ["habari", "ya", "asubuhi", "rafiki", "yangu"]),
        # Devanagari vowel signs and the virama are marks: \w+ cut "प्रकाशस्तंभ" into five pieces.
        ("प्रकाशस्तंभ के रखवाले की आख़िरी रात।", ["प्रकाशस्तंभ", "के", "रखवाले", "की", "आख़िरी", "रात"]),
        # Arabic harakat (tanwin, damma) are marks too.
        ("قبل أن تُدار المنارة آليًا.", ["قبل", "أن", "تُدار", "المنارة", "آليًا"]),
        ("灯塔看守人。", ["灯", "塔", "看", "守", "人"]),
        ("東京に行きました、カタカナー。", ["東", "京", "に", "行", "き", "ま", "し", "た", "カ", "タ", "カ", "ナ", "ー"]),
        # Thai: a consonant with the vowel and tone marks over it is one unit.
        ("ไปเที่ยวกัน", ["ไ", "ป", "เ", "ที่", "ย", "ว", "กั", "น"]),
        ("GPT模型 and 北京", ["gpt", "模", "型", "and", "北", "京"]),
        ("Привет, мир", ["привет", "мир"]),
        ("", []),
        ("... !!", []),
    ],
)
def test_units_per_script(text, units):
    assert tokenize(text) == units


def test_astral_path_agrees_with_the_bmp_path():
    # An emoji (not a unit) sends a text down the path for characters beyond the BMP; the units
    # must be the same as without it, for every prompt of the multilingual suite.
    texts = [json.loads(line)["text"] for line in SUITE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert {json.loads(line)["language"] for line in SUITE.read_text(encoding="utf-8").splitlines() if line.strip()} >= {
        "zh",
        "ar",
        "hi",
        "sw",
    }
    for t in texts:
        assert tokenize(t + " 🙂") == tokenize(t), t
        assert tokenize("🙂" + t.replace(" ", " 🙂 ")) == tokenize(t), t
    # Han beyond the BMP (extension B) is one unit per character, like the BMP ideographs.
    assert tokenize("𠀋𠀌好") == ["𠀋", "𠀌", "好"]
    assert tokenize("cafe\u0301 🙂") == ["cafe\u0301"]  # a combining accent stays in its word


def test_chinese_answer_is_many_units_not_one_word():
    text = "灯塔看守人在最后一夜爬上螺旋楼梯，擦亮那盏陪伴他三十年的灯。" * 4
    assert len(text.split()) == 1
    assert len(tokenize(text)) == 4 * 28
