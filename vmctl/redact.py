"""Credentials never stored or printed: the password of a database URL
(`postgresql://user:PASSWORD@host/db`), password-like query parameters (`?password=...`,
`&sslpassword=...`) and xe's password arguments (`master-password=...`) become `***` in the
journal's command line, in error messages and in warnings. The connection itself uses the real URL. Light: no heavy imports.
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


# an xe argument naming a password, `master-password=...`, `remote-password=...` (pool-join,
# vm-migrate): the whole value, within one word or up to the next blank in free text
_ARG_KEY = r"[A-Za-z0-9_.:\-]*(?:password|passwd|secret)[A-Za-z0-9_.:\-]*="
_ARG_WORD = re.compile(rf"^(-*{_ARG_KEY}).*", re.I | re.DOTALL)
_ARG_TEXT = re.compile(
    rf"""('-*{_ARG_KEY})[^']*|("-*{_ARG_KEY})[^"]*|((?:^|(?<=\s))-*{_ARG_KEY})(?:'[^']*'|"[^"]*"|[^\s'"])*""",
    re.I,
)


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it, and every password argument, replaced by
    `***`."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO_TEXT.sub(rf"\g<1>{MASK}@", text)
    text = _ARG_TEXT.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + MASK, text)
    return _QUERY.sub(rf"\g<1>{MASK}", text)


def redact_word(word: str) -> str:
    """One command-line word (it may hold spaces or quotes) with its credentials replaced."""
    if "://" not in word and "=" not in word:
        return word
    if _ARG_WORD.match(word):
        return _ARG_WORD.sub(rf"\g<1>{MASK}", word)
    word = _USERINFO_WORD.sub(rf"\g<1>{MASK}@", word)
    return _QUERY.sub(rf"\g<1>{MASK}", word)


def redact_words(words: list[str]) -> list[str]:
    return [redact_word(w) for w in words]
