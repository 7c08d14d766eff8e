"""Errors handlers raise to steer the consumer wrapper."""

from __future__ import annotations


class PermanentError(Exception):
    """Retrying cannot help (bad input, a broken invariant): dead-letter the message now."""
