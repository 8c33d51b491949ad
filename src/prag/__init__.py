"""prag: Parametric RAG. Documents are injected into an LLM's FFN weights as per-document LoRAs.

Pipeline stages, one module each: corpus -> retrieval -> augment -> encode -> store (offline),
retrieve -> update -> generate (online). `config` holds the one config object that flows through;
`pipeline` wires the stages; `cli` is the typed command line.
"""

__version__ = "0.1.0"


class PragError(Exception):
    """An error caused by user input or state; the CLI prints it as one line and exits non-zero."""
