"""Credentials never stored or printed: the password of a database URL
(`postgresql://user:PASSWORD@host/db`) and password-like query parameters
(`?password=...`, `&sslpassword=...`) become `***` in the journal's command line, in error
messages and in warnings. The connection itself uses the real URL. Light: no heavy imports.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:PASSWORD@ — in free text the password runs to the last "@" before whitespace or a
# quote (an unencoded "@" in a password hides more, never less); within one command-line word it
# runs to the word's last "@", since a word may hold any character.
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
_USERINFO_TEXT = re.compile(rf"({_SCHEME}[^\s'\":/@]*:)[^\s'\"]*@")
_USERINFO_WORD = re.compile(rf"({_SCHEME}[^:/@]*:).*@", re.DOTALL)
# ?password=... &PGPASSWORD=... &sslpassword=... (any key naming a password, secret or token)
_QUERY = re.compile(
    r"([?&][A-Za-z0-9_.\-]*(?:password|passwd|pwd|secret|token)[A-Za-z0-9_.\-]*=)[^&#\s'\"]*", re.I
)


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO_TEXT.sub(rf"\g<1>{MASK}@", text)
    return _QUERY.sub(rf"\g<1>{MASK}", text)


def redact_word(word: str) -> str:
    """One command-line word (it may hold spaces or quotes) with its credentials replaced."""
    if "://" not in word and "=" not in word:
        return word
    word = _USERINFO_WORD.sub(rf"\g<1>{MASK}@", word)
    return _QUERY.sub(rf"\g<1>{MASK}", word)


def redact_words(words: list[str]) -> list[str]:
    return [redact_word(w) for w in words]
