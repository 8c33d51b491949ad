"""prag: Parametric RAG. Documents are injected into an LLM's FFN weights as per-document LoRAs.

Pipeline stages, one module each: corpus -> retrieval -> augment -> encode -> store (offline),
retrieve -> update -> generate (online). `config` holds the one config object that flows through;
`pipeline` wires the stages; `cli` is the typed command line.
"""

from .errors import Conflict, NotFound, PragError

__all__ = ["Conflict", "NotFound", "PragError", "__version__"]
__version__ = "0.1.0"
