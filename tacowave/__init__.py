"""tacowave: Tacotron-2 + mixture-of-logistics WaveNet text-to-speech training toolkit."""
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy so that `import tacowave` (every CLI's --help) does not pay for importing torch.
    if name in ("Synthesizer", "SynthesisError"):
        from tacowave import synthesizer

        return getattr(synthesizer, name)
    raise AttributeError(f"module 'tacowave' has no attribute {name!r}")
