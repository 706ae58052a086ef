"""CUBE: clustering-based training-set defense.

Cui et al. 2022, "A Unified Evaluation of Textual Backdoor Learning: Frameworks and Benchmarks"
(NeurIPS 2022 Datasets and Benchmarks, arXiv:2206.08514).

Threat model: the defender trains the victim on data it did not vet. In the representation space
of a model trained on the poisoned set, the poisoned examples form their own cluster, apart from
the clean examples of the label they were given. CUBE clusters the training set's
representations with HDBSCAN after a dimensionality reduction and, within each label, keeps the
largest cluster and removes every other cluster holding less than half of that label's examples
(HDBSCAN's noise counts as one such cluster, as in the reference code); the victim is then
trained on what is left.

Differences from the paper's code (OpenBackdoor's `CUBEDefender`):
- the reduction is PCA on L2-normalised representations (so distances follow the cosine the
  reference's UMAP used), not UMAP, which is not a dependency; scikit-learn's HDBSCAN replaces
  the `hdbscan` package;
- the preliminary model is a copy of the victim's own model tuned on the poisoned set with the
  defense's `tuning` and `training` (the reference fine-tunes a fresh BERT for 10 epochs);
- the representation is the last layer's hidden state where the task head reads it (an
  encoder's first token, a causal model's last token);
- `min_cluster_size` and `min_samples` are options (the reference: HDBSCAN's default 5 and 100,
  sized for data sets of thousands of examples)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field
from sklearn.cluster import HDBSCAN
from sklearn.decomposition import PCA

from poisonlab.data import Example
from poisonlab.defenses.sanitize_base import (
    SANITIZERS,
    SanitizerConfig,
    TrainingSetDefense,
)
from poisonlab.models import LoadedModel
from poisonlab.runtime import Runtime


class CubeConfig(SanitizerConfig):
    components: int = Field(10, ge=1, description="dimensions kept by PCA before clustering "
                                                  "(reference: 10 UMAP dimensions)")
    min_cluster_size: int = Field(5, ge=2, description="HDBSCAN's smallest cluster")
    min_samples: int | None = Field(
        100, ge=1, description="HDBSCAN's neighbourhood size for core points (reference: 100); "
                               "capped at the training set's size; null: min_cluster_size")


def minority_clusters(labels: np.ndarray, clusters: np.ndarray) -> list[int]:
    """Indices in clusters that are not the largest of their label and hold less than half of
    that label's examples."""
    removed: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ids, sizes = np.unique(clusters[members], return_counts=True)
        largest = ids[sizes.argmax()]
        for cluster, size in zip(ids, sizes):
            if cluster != largest and size < len(members) / 2:
                removed.extend(members[clusters[members] == cluster].tolist())
    return sorted(removed)


@SANITIZERS.register("cube", CubeConfig)
class Cube(TrainingSetDefense):
    """CUBE (Cui et al. 2022): remove minority clusters of each label in representation space."""

    config: CubeConfig
    conformance = {"min_samples": 20, "training": {"epochs": 6, "learning_rate": 3e-3,
                                                   "max_length": 32}}

    def _suspicious(self, tuned: LoadedModel, train: list[Example],
                    runtime: Runtime | None) -> tuple[list[int], dict[str, Any]]:
        c = self.config
        features = self.representations(tuned, [e.text for e in train], runtime)
        features /= np.linalg.norm(features, axis=1, keepdims=True).clip(min=1e-12)
        reduced = PCA(n_components=min(c.components, *features.shape),
                      random_state=c.seed).fit_transform(features)
        min_samples = min(c.min_samples or c.min_cluster_size, len(train))
        clusters = HDBSCAN(min_cluster_size=c.min_cluster_size,
                           min_samples=min_samples, copy=False).fit_predict(reduced)
        labels = np.asarray([e.label for e in train])
        removed = minority_clusters(labels, clusters)
        found = {int(k): int(n) for k, n in zip(*np.unique(clusters, return_counts=True))}
        return removed, {"clusters": found}
