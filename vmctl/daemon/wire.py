"""What the client and the manager exchange over the manager's Unix socket (standard library
only: the client imports it on every command).

A message is one frame: a kind byte, the payload's length (4 bytes, big-endian) and the payload.
A run request carries the client's standard input, output and error themselves, as file
descriptors (SCM_RIGHTS) attached to its first bytes: the manager reads and writes the client's
terminal, pipe or file directly, so what a command prints is byte for byte what it prints when
run in the client's own process, terminal or not.

Client -> manager                         Manager -> client
  RUN   the request (fields below)          ACCEPT   ready to run it; waits for GO
  GO    run it (the client waits for EXIT)  DECLINE  run it in your own process (reason)
  INTERRUPT  Ctrl-C                          REPLACE  I am another version and now retire:
  STATUS, STOP                                        run it yourself, start a new manager
  CANCEL  a task (its uuid): task-cancel      EXIT     the exit status (decimal)
                                            INFO     the answer to STATUS, STOP or CANCEL
                                                     (key: value lines)

Until the client sends GO either side may give up and the command runs in the client's
process; once it has, the command runs in the manager, whatever happens to the client.
"""

from __future__ import annotations

RUN, GO, INTERRUPT, STATUS, STOP, CANCEL = b"R", b"G", b"I", b"S", b"Q", b"C"
ACCEPT, DECLINE, REPLACE, EXIT, INFO = b"A", b"D", b"V", b"X", b"T"

HEADER = 5  # kind + length
MAX_PAYLOAD = 64 * 1024 * 1024  # a request is a command line and an environment


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


def split_frame(buf: bytearray) -> tuple[bytes, bytes] | None:
    """The first whole frame in buf (removed from it), or None while it is incomplete."""
    if len(buf) < HEADER:
        return None
    n = int.from_bytes(buf[1:HEADER], "big")
    if n > MAX_PAYLOAD:
        raise ValueError("frame too large")
    if len(buf) < HEADER + n:
        return None
    kind, payload = bytes(buf[:1]), bytes(buf[HEADER : HEADER + n])
    del buf[: HEADER + n]
    return kind, payload


# A run request's payload: NUL-separated fields (no argument or environment string holds a NUL),
# in this order, then the environment's NAME=VALUE strings to the end.
FIELDS = (
    "version",  # vmctl.__version__
    "package",  # the directory of the vmctl package the client runs
    "python",  # sys.executable and sys.hexversion, space-separated
    "inventory",  # the inventory the client chose the socket for
    "cwd",
    "umask",  # octal
    "stdin",  # encoding and errors, space-separated
    "stdout",  # encoding, errors, line buffering (0/1), write through (0/1), space-separated
    "stderr",
    "argc",
)


def encode_request(fields: dict[str, str], argv: list[str], env: dict[str, str]) -> bytes:
    import os

    words = [fields[f] for f in FIELDS[:-1]] + [str(len(argv)), *argv]
    words += [f"{k}={v}" for k, v in env.items()]
    return b"\0".join(os.fsencode(w) for w in words)


def decode_request(payload: bytes) -> tuple[dict[str, str], list[str], dict[str, str]]:
    import os

    words = [os.fsdecode(w) for w in payload.split(b"\0")]
    n = len(FIELDS)
    fields = dict(zip(FIELDS, words[:n]))
    argc = int(fields["argc"])
    argv = words[n : n + argc]
    env = {}
    for item in words[n + argc :]:
        k, sep, v = item.partition("=")
        if sep:
            env[k] = v
    if len(argv) != argc:
        raise ValueError("truncated request")
    return fields, argv, env
