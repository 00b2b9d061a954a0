"""CEREDIS engine: learners' evidence to CEREDIS scores and CECRL levels."""

__version__ = "0.1.0"
