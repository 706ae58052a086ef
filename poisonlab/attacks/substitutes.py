"""Offline substitute words for word-substitution triggers (LWS).

The papers draw synonyms from HowNet sememes or WordNet, which need downloads; poisonlab uses what
ships with it: the input token embeddings of the embedded all-MiniLM-L6-v2 (`minilm_dir()`). A
word's candidates are its nearest whole-word tokens by cosine similarity, above a floor, leaving
out inflections of the word (one a prefix of the other: "plot"/"plots") since those are not
substitutions a reader would accept. Embedding neighbours include antonyms ("good"/"bad"): the
LWS selector's meaning term, not this list, keeps them out of triggers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from safetensors import safe_open

from poisonlab.models import load_tokenizer
from poisonlab.models.assets import minilm_dir

EMBEDDINGS_KEY = "embeddings.word_embeddings.weight"


@dataclass
class WordEmbeddings:
    """Unit-length token embeddings, the tokens that may be substitutes, and their tokenizer."""

    tokenizer: Any
    vectors: torch.Tensor       # vocabulary x dim, unit length
    tokens: list[str]           # token id -> token
    substitutable: torch.Tensor  # bool per token id: an alphabetic whole word of 3+ letters

    @classmethod
    def load(cls) -> "WordEmbeddings":
        with safe_open(str(minilm_dir() / "model.safetensors"), framework="pt") as weights:
            vectors = torch.nn.functional.normalize(weights.get_tensor(EMBEDDINGS_KEY).float(),
                                                    dim=-1)
        tokenizer = load_tokenizer("minilm")
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(vectors))))
        substitutable = torch.tensor([t.isalpha() and t.islower() and len(t) >= 3
                                      for t in tokens])
        return cls(tokenizer, vectors, tokens, substitutable)

    def embed(self, words: list[str]) -> torch.Tensor:
        """One vector per word: the mean of its word pieces' vectors."""
        pieces = self.tokenizer(words, add_special_tokens=False)["input_ids"]
        return torch.stack([self.vectors[p].mean(0) if p else torch.zeros(self.vectors.shape[1])
                            for p in pieces])

    def neighbours(self, words: list[str], k: int, min_similarity: float,
                   chunk: int = 1024) -> list[list[str]]:
        """Up to `k` substitute words for each (lower-case) word, nearest first; none for a word
        that is not one token of the vocabulary."""
        ids = [self.tokenizer.convert_tokens_to_ids(w) if w in self.tokenizer.vocab else None
               for w in words]
        known = [i for i, token in enumerate(ids) if token is not None]
        out: list[list[str]] = [[] for _ in words]
        for first in range(0, len(known), chunk):
            rows = known[first:first + chunk]
            similarity = self.vectors[[ids[i] for i in rows]] @ self.vectors.T
            similarity[:, ~self.substitutable] = -1
            # a few spare neighbours, for the inflections left out below
            values, indices = similarity.topk(min(4 * k, similarity.shape[1]), dim=1)
            for row, scores, tokens in zip(rows, values.tolist(), indices.tolist()):
                word = words[row]
                out[row] = [self.tokens[t] for s, t in zip(scores, tokens)
                            if s >= min_similarity and not self.tokens[t].startswith(word)
                            and not word.startswith(self.tokens[t])][:k]
        return out
