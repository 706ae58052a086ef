"""Natural-language queries, one per entity type (the MRC framing of MNER-QG).

The paper publishes no wording; these follow its example ("Please extract person: ...") with
annotation-guideline descriptions. A config may override any of them or add a type."""

from __future__ import annotations

from poisonlab.errors import ConfigError

DEFAULT_QUERIES: dict[str, str] = {
    "PER": "Please extract person: names of people and fictional characters.",
    "LOC": "Please extract location: names of countries, cities, places and landmarks.",
    "ORG": "Please extract organization: names of companies, teams, bands and institutions.",
    "OTHER": "Please extract other: names of events, products, works and other things.",
    "MISC": "Please extract miscellaneous: names of events, products, works and other things.",
}


def build_queries(types: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The query for each type, in the order of `types`; an unknown type without a query is an error."""
    table = {**DEFAULT_QUERIES, **(overrides or {})}
    missing = [t for t in types if t not in table]
    if missing:
        raise ConfigError(f"no query for entity type(s) {missing}; add them under model.queries")
    return {t: table[t] for t in types}
