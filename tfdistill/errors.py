"""Other libraries' exceptions, told in one line inside tfdistill's own error messages."""

from __future__ import annotations


def brief(error: BaseException, limit: int = 200) -> str:
    """`"TypeName: message"` on one line, the message cut to `limit` characters."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
