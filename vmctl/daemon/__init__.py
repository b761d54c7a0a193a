"""The manager: a resident process per user and inventory behind the command line, as xapi is
behind xe and ovsdb-server behind ovs-vsctl.

* ``client.py`` is what the ``vmctl`` entry point runs first: the standard library only, it
  passes the command line, the environment, the working directory and the standard streams
  themselves (their file descriptors, over a Unix socket) to the inventory's manager and exits
  with its exit status; it starts a manager when none answers, and falls back to running the
  command in its own process whenever the manager cannot serve it.
* ``wire.py`` is the format of what the two exchange.
* ``server.py`` is the manager: it runs each command in a thread of its own that sees the
  client's streams, environment and directory (``session.py``), with what one command leaves
  warm for the next kept in between (``warm.py``).

Nothing here is imported unless the manager is used.
"""
