"""crossroute: one address for every LLM API."""

__version__ = "0.1.0"
