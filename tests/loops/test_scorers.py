"""Loop scorers: the paper's properties offline, user and plugin scorers, one score per text."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from monoculture.errors import UserError
from monoculture.loops import scorers as sc
from monoculture.loops.scorers import Scorer, get_scorer, get_scorers, score_frame, score_texts, strip_hashtags


def test_length_removes_hashtags_like_the_paper():
    # TelephoneGameLLM: re.sub(r'#\w+', '', story), then len()
    assert strip_hashtags("Sun and sea #summer #beach_life!") == "Sun and sea  !"
    s = get_scorer("length")
    assert s.score(["Sun and sea #summer #beach_life!", "", "no tags"]).tolist() == [14.0, 0.0, 7.0]
    assert s.bounds == (0.0, float("inf")) and s.describe()["bounds"] == [0.0, None]


def test_positivity_is_vader_compound_offline():
    s = get_scorer("positivity")
    v = s.score(["I love this wonderful day.", "This is a horrible, hateful mess.", "The table is brown."])
    assert -1 <= v.min() and v.max() <= 1
    assert v[0] > 0.5 and v[1] < -0.5 and v[2] == 0.0
    # vaderSentiment 3.3.2's shipped lexicon: "I love this" scores 0.6369, as published for VADER
    assert s.score(["I love this"])[0] == pytest.approx(0.6369, abs=1e-4)
    assert s.bounds == (-1.0, 1.0) and s.version.startswith("vaderSentiment ")
    assert "NLTK" in s.note  # the difference from the paper's analyser is said, not hidden


TRICKY = [
    "I am not so happy, but never so sad.",
    "Without a doubt it is kind of good! It was NOT bad at all.",
    "The best of both worlds is no joke, and that is the bomb.",
    "He is not very good at least; at least he is not the worst.",
    "never this bad, never so good, no good, nor great",
    "Sort of nice? Kind of awful... hardly amazing :) but really terrible :(",
]


def test_positivity_windowed_checks_give_vaders_numbers_exactly(shared_data):
    """Our analyser hands vaderSentiment's negation and idiom checks only the words they read;
    every score must be the original's, on tricky sentences and on real chains."""
    import json

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    files = sorted(
        (shared_data / "telephone" / "Results" / "Meta-Llama-3-8B-Instruct").glob("*/Positivity*/seed_*/output0.json")
    )[:3]
    texts = TRICKY + [" ".join(TRICKY * 20)]
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        texts += [data["initial_story"], *(s[0] for s in data["stories"])]
    assert len(texts) > 100
    ours = get_scorer("positivity").score(texts)
    ref = SentimentIntensityAnalyzer()
    assert ours.tolist() == [ref.polarity_scores(t)["compound"] for t in texts]


def test_positivity_takes_a_users_lexicon_file(tmp_path, monkeypatch):
    lex = tmp_path / "vader_lexicon.txt"
    lex.write_text("zorble\t3.1\t0.5\t[3, 3, 4]\nglumph\t-2.0\t0.3\t[-2, -2]\n", encoding="utf-8")
    default = get_scorer("positivity")
    assert default.score(["zorble"])[0] == 0.0  # not in the shipped lexicon
    named = get_scorer(f"positivity:{lex}")
    assert named.score(["zorble"])[0] > 0.5 and named.score(["glumph"])[0] < -0.3
    assert "sha256:" in named.version and named.name == "positivity"
    monkeypatch.setenv(sc.VADER_LEXICON_ENV, str(lex))
    assert get_scorer("positivity").score(["zorble"])[0] == named.score(["zorble"])[0]
    bad = tmp_path / "bad.txt"
    bad.write_text("ok\t1.0\nbroken line without tab\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.txt:2"):
        get_scorer(f"positivity:{bad}")
    with pytest.raises(UserError, match="not found"):
        get_scorer(f"positivity:{tmp_path / 'missing.txt'}")


def test_difficulty_is_textstat_073_gunning_fog_offline():
    s = get_scorer("difficulty")
    assert s.version.startswith("textstat 0.7.3") and not s.note
    # 0.4 x (words per sentence + 100 x share of words of 3+ syllables, easy words excepted)
    assert s.score(["The cat sat on the mat."])[0] == pytest.approx(0.4 * 6)
    v = s.score(["Notwithstanding considerable institutional heterogeneity, comprehensive reorganisation proceeded.", ""])
    assert v[0] > 20 and v[1] == 0.0
    if importlib.util.find_spec("pkg_resources") is None:  # our stand-in did not leak out
        assert "pkg_resources" not in sys.modules


def _train_tokenizer(tmp_path, corpus):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


NICE = ["what a lovely day", "thank you my friend", "the garden is beautiful", "i like your kind words"]
MEAN = ["you stupid idiot", "shut up you fool", "i hate you idiot", "you are a stupid fool"]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A tiny BERT toxicity classifier trained here for a few steps: labels named like
    Detoxify's (multi-label, sigmoid), so the scorer must find "toxic" and apply a sigmoid."""
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("toxic-clf")
    tok = _train_tokenizer(path, NICE + MEAN)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains 20x slower with threads fighting on a busy CPU
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "toxic", 1: "insult"},
        label2id={"toxic": 0, "insult": 1},
        problem_type="multi_label_classification",
        hidden_dropout_prob=0.0,  # no dropout: 20 steps on 8 texts then fit them the same way on every run
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    enc = tok(NICE + MEAN, return_tensors="pt", padding=True)
    labels = torch.tensor([[0.0, 0.0]] * len(NICE) + [[1.0, 1.0]] * len(MEAN))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(20):
        opt.zero_grad()
        model(**enc, labels=labels).loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    yield path
    torch.set_num_threads(threads)


@pytest.mark.slow  # imports torch and transformers, trains a tiny classifier
def test_toxicity_wraps_a_local_transformers_classifier(tiny_classifier):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    s = get_scorer(f"toxicity:{tiny_classifier}")
    assert s.bounds == (0.0, 1.0) and "transformers" in s.version and "label toxic" in s.version
    # texts it was trained on (a model this small need not generalise), with hashtags to remove
    v = s.score(["what a lovely day #nice", "you stupid idiot #mean", "thank you my friend"])
    assert ((0 <= v) & (v <= 1)).all()
    assert v[1] > 0.8 and v[0] < 0.2 and v[2] < 0.2  # it learned, and the scorer reads the toxic label
    # the same numbers as the model's own sigmoid of the "toxic" logit (hashtags removed first)
    tok = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    with torch.inference_mode():
        ref = torch.sigmoid(model(**tok(["you stupid idiot "], return_tensors="pt")).logits)[0, 0].item()
    assert v[1] == pytest.approx(ref, abs=1e-5)
    # batching does not change a score (padding is masked)
    s.batch_size = 2
    many = ["you stupid fool", "what a lovely day and the garden is beautiful thank you my friend", *NICE]
    assert s.score(many) == pytest.approx(np.concatenate([s.score([t]) for t in many]), abs=1e-5)


def test_toxicity_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="no folder"):
        get_scorer(f"toxicity:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a transformers sequence classifier"):
        get_scorer(f"toxicity:{tmp_path / 'empty'}")


def test_real_detoxify():
    if importlib.util.find_spec("detoxify") is None:
        pytest.skip("detoxify is an optional extra (pip install 'monoculture[detoxify]') and is not installed here")
    try:
        s = get_scorer("toxicity")
    except UserError as e:
        pytest.skip(f"Detoxify's weights are downloaded on first use and cannot be fetched here: {e}")
    v = s.score(["have a nice day", "you are a stupid idiot"])
    assert v[1] > v[0] and ((0 <= v) & (v <= 1)).all()


def test_user_scorers_module_function_class_and_entry_points(tmp_path, monkeypatch):
    (tmp_path / "my_scorers.py").write_text(
        textwrap.dedent(
            """
            from monoculture.loops.scorers import Scorer

            def words(texts):
                return [len(t.split()) for t in texts]
            words.bounds = (0, 1e9)
            words.version = "words 1"

            def broken(texts):
                return [1.0]

            class Vowels(Scorer):
                bounds = (0.0, 1.0)
                version = "vowels 2"
                def score(self, texts):
                    return [sum(c in "aeiou" for c in t) / max(len(t), 1) for t in texts]
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    w = get_scorer("my_scorers:words")
    assert w.name == "my_scorers:words" and w.bounds == (0.0, 1e9) and w.version == "words 1"
    assert w.score(["a b c", ""]).tolist() == [3.0, 0.0]
    v = get_scorer("my_scorers:Vowels")
    assert v.name == "my_scorers:Vowels" and score_texts(v, ["aa"]).tolist() == [1.0]
    with pytest.raises(UserError, match="one number per text"):
        get_scorer("my_scorers:broken").score(["a", "b"])
    monkeypatch.setattr(sc, "_plugins", lambda: {"wordcount": "my_scorers:words"})
    assert get_scorer("wordcount").score(["one two"]).tolist() == [2.0]
    with pytest.raises(UserError, match="unknown scorer 'nope'"):
        get_scorer("nope")
    with pytest.raises(UserError, match="cannot import"):
        get_scorer("no_such_module_here:fn")
    with pytest.raises(UserError, match="named twice"):
        get_scorers(["length", "length"])
    with pytest.raises(UserError, match="takes no argument"):
        get_scorer("length:x")


class Counting(Scorer):
    name = "counting"
    bounds = None

    def __init__(self):
        self.seen: list[str] = []

    def score(self, texts):
        self.seen.extend(texts)
        return np.array([float(len(t)) for t in texts])


def test_score_frame_scores_each_text_once():
    c = Counting()
    frame = pd.DataFrame({"text": ["a", "bb", "a", None, "bb", "ccc"]})
    cache: dict = {}
    out = score_frame(frame, [c, "length"], cache=cache)
    assert out["counting"].tolist()[:3] == [1.0, 2.0, 1.0] and np.isnan(out["counting"].iloc[3])
    assert sorted(c.seen) == ["", "a", "bb", "ccc"]  # each distinct text once (a missing text is "")
    c.seen.clear()
    score_texts(c, ["a", "ccc", "dddd"], cache)
    assert c.seen == ["dddd"]  # the cache is shared across calls
