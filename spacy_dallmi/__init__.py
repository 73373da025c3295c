"""DALLMi domain adaptation for multi-label transformer text classifiers, as spaCy components."""

__version__ = "0.2.0"
