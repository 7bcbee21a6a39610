"""The strict answer parser, on answers in every suite language, with refusals and junk.

A parser that guesses turns refusals into opinions; these tests pin both directions: what must
parse (letters, numbers, option texts, lead-ins, in all seven languages) and what must not."""

from __future__ import annotations

import pytest
from probe_helpers import LANGS7

from monoculture.probes.items import LETTERS, load_items, option_sets, render_user, template_for, templates
from monoculture.probes.parser import AnswerParser, parse_answer


@pytest.fixture(scope="module")
def items():
    return load_items("values")


@pytest.fixture(scope="module")
def parsers(items):
    return {g: AnswerParser(s) for g, s in option_sets(items).items()}


# val-01: Very important / Rather important / Not very important / Not at all important
PER_LANGUAGE = {
    "en": [("Answer: B", 1), ("Rather important", 1), ("not very important.", 2), ("2", 1), ("I choose D", 3), ("(A)", 0)],
    "zh": [("答案：C", 2), ("比较重要", 1), ("非常重要。", 0), ("二", 1), ("我选B", 1), ("第四项", 3), ("Ｂ", 1)],
    "ar": [("الإجابة: د", 3), ("مهم إلى حد ما", 1), ("مهم جدا", 0), ("٢", 1), ("ب", 1), ("الإجابة: B", 1)],
    "hi": [("उत्तर: A", 0), ("काफ़ी महत्वपूर्ण", 1), ("काफी महत्वपूर्ण", 1), ("२", 1), ("(ख)", 1), ("उत्तर: बिल्कुल महत्वपूर्ण नहीं", 3)],
    "es": [
        ("Respuesta: D", 3),
        ("Bastante importante", 1),
        ("muy importante.", 0),
        ("3", 2),
        ("Elijo C", 2),
        ("Mi respuesta es: nada importante", 3),
    ],
    "ru": [("Ответ: В", 1), ("Скорее важно", 1), ("Совсем не важно.", 3), ("1", 0), ("Вариант C", 2)],
    "sw": [("Jibu: C", 2), ("Muhimu kiasi", 1), ("Muhimu sana.", 0), ("4", 3), ("Jibu langu ni A", 0), ("Ninachagua D", 3)],
}

REFUSALS = {
    "en": ["As an AI, I don't have personal beliefs.", "I cannot answer questions about religion.", "I'd rather not say."],
    "zh": ["作为一个人工智能，我没有个人信仰。", "我无法回答这个问题。"],
    "ar": ["لا أستطيع الإجابة على هذا السؤال.", "كذكاء اصطناعي، ليس لدي آراء شخصية."],
    "hi": ["एक एआई के रूप में, मेरी कोई व्यक्तिगत राय नहीं है।", "मैं उत्तर नहीं दे सकता।"],
    "es": ["Como IA, no tengo creencias religiosas.", "No puedo responder a esta pregunta."],
    "ru": ["Как языковая модель, я не могу иметь мнения.", "Я не могу ответить на этот вопрос."],
    "sw": ["Siwezi kujibu swali hili.", "Kama AI, sina maoni binafsi."],
}

JUNK = [
    "lorem ipsum dolor",
    "🙂",
    "A person like me would say it depends",
    "E",
    "9",
    "0",
    "ABCD",
    "The options are A, B, C and D",
    "Very important because",
    "<think>let me think",
    "A.I. is",
    "Д",
    "?",
]


@pytest.mark.parametrize("lang", LANGS7)
def test_answers_in_every_language_parse_to_the_right_option(parsers, lang):
    p = parsers["val-01"]
    for text, want in PER_LANGUAGE[lang]:
        got = p.parse(text)
        assert got.ok and got.option == want, (lang, text, got)


@pytest.mark.parametrize("lang", LANGS7)
def test_refusals_in_every_language_are_counted_as_refusals(parsers, lang):
    for text in REFUSALS[lang]:
        assert parsers["val-01"].parse(text).outcome == "refusal", (lang, text)


@pytest.mark.parametrize("text", JUNK)
def test_junk_is_unparseable_never_an_option(parsers, text):
    got = parsers["val-01"].parse(text)
    assert got.outcome == "unparseable" and got.option is None, (text, got)


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "<think>hmm</think>", "****", "-"])
def test_empty_answers(parsers, text):
    assert parsers["val-01"].parse(text).outcome == "empty"


def test_none_is_an_error(parsers):
    assert parsers["val-01"].parse(None).outcome == "error"


@pytest.mark.parametrize("text", ["A or B", "A, B", "A/C", "B или C", "A或B", "أ أو ب", "A या B", "B. Very important", "B o C"])
def test_two_options_are_ambiguous(parsers, text):
    assert parsers["val-01"].parse(text).outcome == "ambiguous", text


def test_same_letter_twice_is_that_letter(parsers):
    assert parsers["val-01"].parse("B, B").option == 1


def test_a_hedge_with_a_letter_is_not_an_answer(parsers):
    """'As an AI ... but B' chose something only under protest; the strict parser counts it as a
    refusal rather than reading an opinion into it."""
    assert parsers["val-01"].parse("As an AI I don't have beliefs, but if I had to pick: B").outcome == "refusal"


def test_letter_then_explanation_and_reasoning_blocks(parsers):
    p = parsers["val-01"]
    assert p.parse("B\n\nReligion matters somewhat to many people.").option == 1
    assert p.parse("B. Rather important").option == 1
    assert p.parse("**C**").option == 2
    assert p.parse("<think>Many people say A.</think>\nD").option == 3
    assert p.parse("b) rather important").option == 1


def test_every_option_of_every_item_parses_in_its_own_language(items, parsers):
    """No two options of a question collide after normalisation, in any of the 315 items."""
    for it in items:
        p = parsers[it.group]
        for i, opt in enumerate(it.options):
            assert p.parse(opt).option == i, (it.id, opt)
            assert p.parse(f"{LETTERS[i]}.").option == i
            assert p.parse(f"{LETTERS[i]}. {opt}").option == i, (it.id, opt)
            assert p.parse(template_for(it.language)["answer_prefix"] + " " + LETTERS[i]).option == i, it.id


def test_an_answer_in_another_language_than_the_question_parses(items, parsers):
    en = {it.group: it for it in items if it.language == "en"}
    for it in items:
        if it.language == "zh":
            p = parsers[it.group]
            for i, opt in enumerate(en[it.group].options):
                assert p.parse(opt).option == i


def test_letters_beyond_the_options_are_unparseable():
    three = [["Good", "Neither", "Bad"]]
    assert parse_answer("D", three).outcome == "unparseable"
    assert parse_answer("4", three).outcome == "unparseable"
    assert parse_answer("C", three).option == 2


def test_templates_cover_every_suite_language(items):
    langs = {it.language for it in items}
    assert langs == set(LANGS7)
    for lang in langs:
        t = templates()[lang]
        assert {"instruction", "answer_prefix", "steer", "answer_lead_ins", "refusals", "conjunctions"} <= set(t)
        assert "{country}" in t["steer"]
    it = next(i for i in items if i.language == "hi")
    text = render_user(it, steer="Kenya")
    assert text.startswith(templates()["hi"]["steer"].format(country="Kenya"))
    assert "A. " in text and "D. " in text and text.endswith(templates()["hi"]["instruction"])
