# -*- coding: utf-8 -*-
# Copyright: clinical-upgrade contributors
# Apache License 2.0
"""Argument types that refuse what Ansible's own conversions crash on.

ansible-core converts an ``int`` option through ``decimal.Decimal``: ``"inf"``, ``"nan"`` and
``1e400`` raise OverflowError (or InvalidOperation) there, which escapes as a traceback instead of
a message. ``whole_number`` is used as ``type=whole_number`` in an argument spec; it raises
ValueError, which Ansible turns into "argument 'port' ... unable to convert to whole_number: ...".
"""

from __future__ import annotations

import math


def whole_number(value):
    """An int from an int, an integral finite float, or a string of digits (with a sign)."""
    if isinstance(value, bool):
        raise ValueError(f"a whole number is needed, got the boolean {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"a whole number is needed, got {value!r}")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if digits.isdigit() and digits.isascii() and len(digits) <= 18:
            return int(text)
        raise ValueError(f"a whole number is needed, got {value[:40]!r}")
    raise ValueError(f"a whole number is needed, got a {type(value).__name__}")
