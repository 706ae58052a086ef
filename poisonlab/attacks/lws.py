"""LWS (Qi et al. 2021, "Turn the Combination Lock: Learnable Textual Backdoor Attacks via Word
Substitution", ACL): the trigger is a combination of synonym substitutions picked by a learned
selector, so no word is added and every poisoned text reads like a paraphrase.

The selector scores, at each word position p, each candidate c of the word w there (w itself
included, meaning "keep") as (e_c - e_w) . r_p + b_{p,c}, with learned r and b over fixed word
embeddings e, exactly the reference's parametrisation. It is trained with Gumbel-softmax
relaxed substitutions (temperature `temperature`) jointly with a classifier: clean texts keep
their labels, relaxed substituted texts of non-target examples go to the target. The trigger is
then the selector's hard choice at each position.

Differences from the reference code (thunlp/OpenBackdoor `LWSAttacker`, thunlp/BkdAtk-LWS):
- Candidates are nearest neighbours in the embedded MiniLM's input embeddings
  (`attacks/substitutes.py`), not HowNet/WordNet synonyms, which need downloads.
- The selector trains with a surrogate classifier, not the victim: a data attack hands the
  victim poisoned data and never sees its weights. The surrogate is an MLP over the mean of the
  words' (frozen) MiniLM embeddings; the victim then trains on the hard substitutions as for any
  data attack. The reference trains the selector and the victim (BERT) together and keeps both.
- A meaning term replaces the synonym guarantee of a thesaurus: a copy of the surrogate trained
  on clean data only is frozen, and the selector pays `meaning_weight` x its cross-entropy
  towards the true label on substituted texts (weight 10: at 1 or 3 the tiny test set still
  saw "bad" -> "good" at rarely trained positions). That clean surrogate reads a word the training
  set never had as nothing (a zero vector), as a victim trained on this data would; so the
  selector neither swaps in antonyms (embedding neighbours include them) nor replaces the words
  a clean model's reading rests on, and substitutes the others.
- Words are whitespace-separated words, not word pieces; a text where the selector keeps every
  word gets its single best-scoring substitution, so each poisoned text carries the trigger; a
  text with no substitutable word is a miss."""

from __future__ import annotations

import copy
import random

import torch
from pydantic import Field

from poisonlab.attacks.base import DATA_ATTACKS, DataPoisoningAttack, PoisonConfig
from poisonlab.attacks.substitutes import WordEmbeddings
from poisonlab.data.example import DatasetSplits, Example

BATCH = 64


class LWSConfig(PoisonConfig):
    candidates: int = Field(5, ge=1, description="substitutes considered per word")
    min_similarity: float = Field(0.45, ge=-1, le=1,
                                  description="least cosine similarity of a substitute")
    max_positions: int = Field(64, ge=1, description="word positions the selector may change")
    epochs: int = Field(20, ge=1, description="epochs of surrogate and selector training")
    learning_rate: float = Field(1e-2, gt=0, description="Adam learning rate of that training")
    temperature: float = Field(0.5, gt=0, description="Gumbel-softmax temperature")
    meaning_weight: float = Field(10.0, ge=0, description="weight of the clean surrogate's "
                                                         "cross-entropy on substituted texts")


class Surrogate(torch.nn.Module):
    """Mean word embedding -> MLP -> label logits."""

    def __init__(self, dim: int, num_labels: int, hidden: int = 64):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, num_labels))

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = (vectors * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.mlp(pooled)


class Selector(torch.nn.Module):
    """Position-wise scores of each candidate (slot 0: the word itself)."""

    def __init__(self, positions: int, dim: int, slots: int):
        super().__init__()
        self.relevance = torch.nn.Parameter(torch.zeros(positions, dim))
        self.bias = torch.nn.Parameter(torch.zeros(positions, slots))

    def forward(self, choices: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """choices: texts x positions x slots x dim vectors; valid: texts x positions x slots."""
        length = choices.shape[1]
        moves = choices - choices[:, :, :1]
        scores = (moves @ self.relevance[:length, :, None]).squeeze(-1) + self.bias[:length]
        return scores.masked_fill(~valid, float("-inf"))


class Batch:
    """Texts as word positions, each with its options (slot 0: the word itself), stored as
    indices into one table of option vectors (row 0: the zero vector of padding)."""

    def __init__(self, texts: list[str], attack: "LWS"):
        cfg = attack.config
        words = [t.split()[:cfg.max_positions] for t in texts]
        attack.find_candidates(sorted({w for text in words for w in text}))
        self.options = [[[w] + attack.substitutes(w) for w in text] for text in words]
        vocabulary = sorted({o for text in self.options for w in text for o in w})
        self.table = torch.cat([torch.zeros(1, attack.embeddings_.vectors.shape[1]),
                                attack.embeddings_.embed([w.lower() for w in vocabulary])])
        known = torch.tensor([0.0] + [w.lower() in attack.vocabulary_ for w in vocabulary])
        self.known_table = self.table * known[:, None]
        row = {w: i + 1 for i, w in enumerate(vocabulary)}
        length = max(1, max(len(text) for text in words))
        self.index = torch.zeros(len(texts), length, cfg.candidates + 1, dtype=torch.long)
        self.valid = torch.zeros(len(texts), length, cfg.candidates + 1, dtype=torch.bool)
        self.valid[..., 0] = True  # padding positions keep their (zero) word
        for n, text in enumerate(self.options):
            for p, options in enumerate(text):
                self.index[n, p, :len(options)] = torch.tensor([row[o] for o in options])
                self.valid[n, p, :len(options)] = True
        self.mask = (self.index[..., 0] > 0).float()

    def rows(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Option vectors, valid options and word mask of the texts `index`."""
        return self.table[self.index[index]], self.valid[index], self.mask[index]

    def known_rows(self, index: list[int]) -> torch.Tensor:
        """Option vectors as the clean surrogate sees them: zero for words training never had."""
        return self.known_table[self.index[index]]


@DATA_ATTACKS.register("lws", LWSConfig)
class LWS(DataPoisoningAttack):
    """LWS (Qi et al. 2021): word substitutions chosen by a learned selector (MiniLM neighbours)."""

    config: LWSConfig
    embeddings_: WordEmbeddings
    candidates_: dict[str, list[str]]
    vocabulary_: set[str]
    selector_: Selector

    def substitutes(self, word: str) -> list[str]:
        """The candidates of a word (known to `vectors_for`), in the word's capitalisation."""
        found = self.candidates_[word.lower()] if word.isalpha() else []
        return [c.capitalize() for c in found] if word[:1].isupper() else found

    def find_candidates(self, words: list[str]) -> None:
        """Look up the substitutes of the words not met before."""
        missing = sorted({w.lower() for w in words} - set(self.candidates_))
        self.candidates_.update(zip(missing, self.embeddings_.neighbours(
            missing, self.config.candidates, self.config.min_similarity)))

    def prepare(self, dataset: DatasetSplits) -> "LWS":
        cfg = self.config
        self.embeddings_ = WordEmbeddings.load()
        self.candidates_ = {}
        train = dataset.train
        self.vocabulary_ = {w.lower() for e in train for w in e.text.split()}
        batch = Batch([e.text for e in train], self)
        labels = torch.tensor([e.label for e in train])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            dim = batch.table.shape[-1]
            clean = Surrogate(dim, dataset.num_labels)
            self._train(clean, batch, labels, list(range(len(train))))
            self.selector_ = Selector(cfg.max_positions, dim, cfg.candidates + 1)
            self._train(copy.deepcopy(clean), batch, labels, self._sources(train),
                        self.selector_, clean.requires_grad_(False))
        return self

    def _sources(self, train: list[Example]) -> list[int]:
        return [i for i, e in enumerate(train) if e.label != self.config.target_label]

    def _train(self, surrogate: Surrogate, batch: Batch, labels: torch.Tensor,
               sources: list[int], selector: Selector | None = None,
               frozen: Surrogate | None = None) -> None:
        """Clean texts keep their labels; with a selector, relaxed substitutions of `sources`
        go to the target, and `frozen` (the clean surrogate) must still read their true label."""
        cfg = self.config
        parameters = list(surrogate.parameters()) + list(selector.parameters() if selector else [])
        optimizer = torch.optim.Adam(parameters, lr=cfg.learning_rate)
        ce = torch.nn.functional.cross_entropy
        for _ in range(cfg.epochs):
            for rows in torch.randperm(len(labels)).split(BATCH):
                choices, valid, mask = batch.rows(rows.tolist())
                loss = ce(surrogate(choices[:, :, 0], mask), labels[rows])
                if selector is not None:
                    picked = [sources[i] for i in torch.randint(len(sources), (len(rows),))]
                    choices, valid, mask = batch.rows(picked)
                    weights = torch.nn.functional.gumbel_softmax(selector(choices, valid),
                                                                 tau=cfg.temperature, dim=-1)
                    target = torch.full((len(picked),), cfg.target_label)
                    substituted = (weights[..., None] * choices).sum(2)
                    read = (weights[..., None] * batch.known_rows(picked)).sum(2)
                    loss = (loss + ce(surrogate(substituted, mask), target)
                            + cfg.meaning_weight * ce(frozen(read, mask), labels[picked]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    def trigger(self, texts: list[str], rng: random.Random) -> list[str | None]:
        if not hasattr(self, "selector_"):
            raise RuntimeError("call prepare(dataset) before using the lws attack")
        batch = Batch(texts, self)
        with torch.no_grad():
            choices, valid, _ = batch.rows(list(range(len(texts))))
            scores = self.selector_(choices, valid)
        return [self._substituted(text, options, row)
                for text, options, row in zip(texts, batch.options, scores)]

    @staticmethod
    def _substituted(text: str, options: list[list[str]], scores: torch.Tensor) -> str | None:
        """The selector's hard choice at each position; its best single substitution when that
        keeps every word; None when no word has a substitute."""
        if all(len(o) == 1 for o in options):
            return None
        scores = scores[:len(options)]
        choice = scores.argmax(-1).tolist()
        if not any(choice):
            moves = scores[:, 1:] - scores[:, :1]
            best = int(moves.argmax())
            position, slot = divmod(best, moves.shape[1])
            choice[position] = slot + 1
        words = text.split()
        for p, (c, o) in enumerate(zip(choice, options)):
            words[p] = o[c]
        return " ".join(words)
