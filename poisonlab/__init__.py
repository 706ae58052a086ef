"""poisonlab: backdoor attacks and defenses on language models, organised by how the model is adapted."""

__version__ = "0.1.0"
