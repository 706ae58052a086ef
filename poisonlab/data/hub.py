"""Hugging Face Hub data sets (online only), mapped to poisonlab's schema.

`glue/sst2` -> datasets.load_dataset("glue", "sst2"). The text column is the first of
`text`, `sentence`, `content`, `review` that exists; `validation` becomes dev; a test split
without labels (GLUE hides them as -1) is replaced by the validation split."""

from __future__ import annotations

from poisonlab.data.example import DatasetSplits, Example
from poisonlab.errors import PoisonlabError

TEXT_COLUMNS = ("text", "sentence", "content", "review")


def hub_dataset(name: str, *, text_field: str | None = None,
                label_field: str = "label") -> DatasetSplits:
    path, _, subset = name.partition("/")
    return hub_splits(path, subset or None, name=name, text_field=text_field,
                      label_field=label_field)


def hub_splits(path: str, subset: str | None, *, name: str, text_field: str | None = None,
               label_field: str = "label") -> DatasetSplits:
    """`datasets.load_dataset(path, subset)` as poisonlab splits, named `name`."""
    import datasets
    try:
        loaded = datasets.load_dataset(path, subset)
    except Exception as exc:  # offline, unknown name, ...: all user-fixable
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PoisonlabError(f"cannot load Hub data set '{name}': {reason}") from None

    def convert(split) -> list[Example]:
        column = text_field or next((c for c in TEXT_COLUMNS if c in split.column_names), None)
        if column is None:
            raise PoisonlabError(f"Hub data set '{name}': no text column among "
                                 f"{split.column_names}; set text_field")
        return [Example(t, int(y)) for t, y in zip(split[column], split[label_field])
                if isinstance(t, str) and t.strip() and int(y) >= 0]

    train = convert(loaded["train"])
    dev = convert(loaded["validation"]) if "validation" in loaded else []
    test = convert(loaded["test"]) if "test" in loaded else []
    if not test:
        test = dev
    feature = loaded["train"].features.get(label_field)
    names = list(getattr(feature, "names", None) or
                 [str(i) for i in range(max(e.label for e in train) + 1)])
    return DatasetSplits(name, names, train=train, dev=dev, test=test, source=f"hub:{name}")
