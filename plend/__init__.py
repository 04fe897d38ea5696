"""plend: the on-robot software of a PLEN2-class small biped."""

__version__ = "0.1.0"
