"""WordLlama: a static token-embedding model (256 dimensions) bundled inside its PyPI wheel.

It needs no download and embeds thousands of texts a second on a laptop CPU. A text's vector is
the mean of its tokens' vectors, so it sees which words a text uses, not their order; and its
tokenizer (Llama 2's, English-centred) has words for Latin, Cyrillic and CJK text, while many
other scripts (Amharic, Thai, Devanagari, ...) come out as raw bytes or single letters, which
carry no meaning in a static table. Those tokens are left out of the mean, and a text with more
of them than of words gets a zero vector, which measure leaves out and counts (the way tfidf's
zero vectors are), instead of a near-constant vector that would make every such answer look
alike.
"""

from __future__ import annotations

import unicodedata
from itertools import chain
from pathlib import Path
from typing import ClassVar

import numpy as np

from monoculture.embedders.base import Embedder, files_fingerprint, param_int, refuse_unknown
from monoculture.errors import UserError

CONFIG = "l2_supercat"
#: The revision of the pooling below; a change to which tokens count changes every vector.
POOLING = "pool2"
#: The dimensions the bundled 256-wide table can be cut to (WordLlama is Matryoshka-trained).
DIMS = (64, 128, 256)
#: Scripts whose single characters are words or morphemes (Han, kana, hangul) and Latin, whose
#: single letters are words ("a", "I") or initials; a lone letter of another alphabet is not.
_MEANINGFUL_SINGLE = ("LATIN", "CJK", "HIRAGANA", "KATAKANA", "HANGUL")


def _token_kinds(tokenizer, vocab_size: int) -> np.ndarray:
    """Per token id: 1 a word or word piece it has a meaning for, 0 ignored (a bare space marker,
    control tokens, UTF-8 continuation bytes), -1 what it cannot see (a character it only has
    bytes for, counted once by its lead byte; a lone letter of a script it has no words for).
    Counting characters rather than bytes keeps "Sure! 🌸" an answer it can read in part."""
    kinds = np.ones(vocab_size, dtype=np.int8)
    for tok, i in tokenizer.get_vocab().items():
        if i >= vocab_size:
            continue
        if tok == "<unk>":
            kinds[i] = -1
            continue
        if tok.startswith("<0x") and tok.endswith(">") and len(tok) == 6:
            kinds[i] = 0 if 0x80 <= int(tok[3:5], 16) <= 0xBF else -1
            continue
        if tok in ("<s>", "</s>"):
            kinds[i] = 0
            continue
        core = tok.replace("\u2581", "")
        if not core:
            kinds[i] = 0
        elif len(core) == 1 and unicodedata.category(core)[0] in "LM":
            name = unicodedata.name(core, "")
            if not name.startswith(_MEANINGFUL_SINGLE):
                kinds[i] = -1
    return kinds


class WordLlamaEmbedder(Embedder):
    """``wordllama`` (256 dims) or ``wordllama?dim=64|128``. Offline by construction: the model
    is read from the package's own folder with downloads disabled."""

    batch_size = 2048
    long_texts: ClassVar[str] = "no window: the mean over every token of the whole text"
    zero_vectors: ClassVar[str] = (
        "fewer of its tokens are words in wordllama's vocabulary than are bytes or lone letters of a script it has no words for"
    )
    requires: ClassVar[tuple[str, str] | None] = ("wordllama", "wordllama")

    @classmethod
    def check_spec(cls, arg: str, params: dict[str, str]) -> None:
        if arg:
            raise UserError(
                f"embedder wordllama:{arg}: wordllama takes no model name (its model is bundled); use wordllama?dim=128"
            )
        refuse_unknown("wordllama", params, ("dim",))
        if "dim" in params and param_int("dim", params["dim"]) not in DIMS:
            raise UserError(f"embedder wordllama: dim={params['dim']}; use one of {', '.join(map(str, DIMS))}")

    @classmethod
    def from_spec(cls, arg: str, params: dict[str, str]) -> WordLlamaEmbedder:
        cls.check_spec(arg, params)
        return cls(dim=param_int("dim", params.get("dim", 256)))

    def __init__(self, dim: int = 256):
        try:
            import wordllama
            from wordllama import WordLlama
        except ImportError:
            raise UserError("the wordllama embedder needs: pip install 'monoculture[wordllama]'") from None
        from importlib.metadata import version

        # load() looks for the bundled tokenizer under wordllama/tokenizer/ (it ships in
        # tokenizers/) and then downloads it; the package's own folder as cache_dir finds both
        # bundled files there, and disable_download makes a missing file an error, not a request.
        pkg = Path(wordllama.__file__).parent
        try:
            wl = WordLlama.load(CONFIG, cache_dir=pkg, dim=256, trunc_dim=dim if dim != 256 else None, disable_download=True)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"cannot load the bundled wordllama model: {e}") from None
        self.table = np.ascontiguousarray(wl.embedding, dtype=np.float32)
        self.tokenizer = wl.tokenizer
        self.tokenizer.no_padding()  # WordLlama pads each batch; the sparse pooling below needs no padding
        self.tokenizer.no_truncation()
        self.kinds = _token_kinds(self.tokenizer, self.table.shape[0])
        self.dim = dim
        self.name = "wordllama" if dim == 256 else f"wordllama:dim{dim}"
        # The pooling is monoculture's (which tokens count), so its revision is part of the version.
        self.version = f"{version('wordllama')}-{CONFIG}-{files_fingerprint(pkg, f'*/{CONFIG}*')}-{POOLING}"

    def counts(self, texts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, token ids, kinds) of every token of ``texts``, flattened."""
        enc = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in enc), dtype=np.int64, count=len(enc))
        ids = np.fromiter(chain.from_iterable(e.ids for e in enc), dtype=np.int64, count=int(lengths.sum()))
        np.clip(ids, 0, self.table.shape[0] - 1, out=ids)
        rows = np.repeat(np.arange(len(enc)), lengths)
        return rows, ids, self.kinds[ids]

    def unseen(self, texts) -> np.ndarray:
        """Which texts are mostly outside the vocabulary (their vectors are zero)."""
        rows, _, kinds = self.counts(texts)
        n = len(texts)
        return np.bincount(rows[kinds == 1], minlength=n) <= np.bincount(rows[kinds == -1], minlength=n)

    def embed(self, texts):
        from scipy.sparse import csr_matrix

        n = len(texts)
        rows, ids, kinds = self.counts(texts)
        seen = kinds == 1
        # The mean of the seen tokens' vectors as one sparse (texts x vocabulary) count matrix
        # times the table: no (texts x tokens x dims) array, no padding.
        S = csr_matrix((np.ones(int(seen.sum()), np.float32), (rows[seen], ids[seen])), shape=(n, self.table.shape[0]))
        V = np.asarray(S @ self.table, dtype=np.float32)
        n_seen = np.bincount(rows[seen], minlength=n)
        n_unseen = np.bincount(rows[kinds == -1], minlength=n)
        V /= np.maximum(n_seen, 1)[:, None]
        V[n_seen <= n_unseen] = 0.0
        return V
