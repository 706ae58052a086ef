"""Hugging Face Hub data sets (online, or from the local Hub cache), mapped to poisonlab's schema.

A name reads as `org/name` (a Hub repository: `stanfordnlp/sst2`), `org/name/config`
(`nyu-mll/glue/cola`) or `name/config` (a canonical data set with a config: `glue/sst2`); a
two-part name is tried as a repository first, then as `name/config`. The text column is the
first of `text`, `sentence`, `content`, `review` that exists; `validation` becomes dev; a test
split without labels (GLUE hides them as -1) is replaced by the validation split."""

from __future__ import annotations

import re
from pathlib import Path

from poisonlab.data.example import DatasetSplits, Example
from poisonlab.data.files import FORMATS
from poisonlab.errors import PoisonlabError

TEXT_COLUMNS = ("text", "sentence", "content", "review")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+){1,2}")


class HubNotFoundError(PoisonlabError):
    """The Hub has no data set under this repository name."""


def is_hub_name(name: str) -> bool:
    """Whether `name` has the shape of a Hub data-set name (2 or 3 parts, not a data file)."""
    return bool(_HUB_NAME.fullmatch(name)) and Path(name).suffix.lower() not in FORMATS


def hub_readings(name: str) -> list[tuple[str, str | None]]:
    """The (repository, config) pairs `name` may mean, in the order they are tried."""
    parts = name.split("/")
    if len(parts) == 3:
        return [(f"{parts[0]}/{parts[1]}", parts[2])]
    if len(parts) == 2:
        return [(name, None), (parts[0], parts[1])]
    return [(name, None)]


def hub_dataset(name: str, *, text_field: str | None = None,
                label_field: str = "label") -> DatasetSplits:
    """The Hub data set `name` as poisonlab splits (see the module doc for the name forms)."""
    readings = hub_readings(name)
    for path, subset in readings[:-1]:
        try:
            return hub_splits(path, subset, name=name, text_field=text_field,
                              label_field=label_field)
        except HubNotFoundError:
            continue
    path, subset = readings[-1]
    return hub_splits(path, subset, name=name, text_field=text_field, label_field=label_field)


def _load(path: str, subset: str | None, name: str):
    """`datasets.load_dataset(path, subset)`, its failures as one-line user errors."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    try:
        return datasets.load_dataset(path, subset)
    except DatasetNotFoundError:
        raise HubNotFoundError(f"cannot load Hub data set '{name}': the Hub has no data set "
                               f"'{path}'") from None
    except Exception as exc:  # offline, no network, unknown config, ...: all user-fixable
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if datasets.config.HF_HUB_OFFLINE:
            raise PoisonlabError(
                f"cannot load Hub data set '{name}': a Hub name needs the network and "
                "HF_HUB_OFFLINE is set (nor is it in the local Hub cache); unset HF_HUB_OFFLINE "
                "on a machine with network access, or use a builtin or research set or a "
                f"local file ({reason})") from None
        if isinstance(exc, ConnectionError):
            raise PoisonlabError(f"cannot load Hub data set '{name}': the Hub cannot be "
                                 f"reached (a Hub name needs network access): {reason}") from None
        raise PoisonlabError(f"cannot load Hub data set '{name}': {reason}") from None


def hub_splits(path: str, subset: str | None, *, name: str, text_field: str | None = None,
               label_field: str = "label") -> DatasetSplits:
    """`datasets.load_dataset(path, subset)` as poisonlab splits, named `name`."""
    loaded = _load(path, subset, name)

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
