"""The pure placement, HA and migration engine (engine.md).

Every function takes an in-memory snapshot of one pool (:mod:`vmctl.engine.snapshot`) and returns
decisions or plans; nothing here touches the store, the clock or a global random generator.
Importing this package is cheap: NumPy is imported lazily, inside the functions that place.

Where things are:

* :mod:`vmctl.engine.snapshot` — ``PoolState``, ``HostState``, ``VMState``, ``GroupState``,
  ``SRState``, ``NetworkState``, ``VDIState``: the model the command layer fills from the
  inventory; derived per-host loads; ``tie_key``.
* :mod:`vmctl.engine.placement` — filters (§2.1), weighers (§2.2), ``Scheduler`` (single
  decisions, explicit targets, ``NO_HOSTS_AVAILABLE``), ``place_batch`` (§2.3), ``explain`` (§2.4).
* :mod:`vmctl.engine.ha` — failure sets, the restart packer, ``plan_exists``, ``max_failures``,
  admission control (``check_change``, ``admission_error``) (§3.1–3.4).
* :mod:`vmctl.engine.failover` — ``fail_hosts``/``failover_plan``, the restart procedure through
  the placement scheduler (§3.5).
* :mod:`vmctl.engine.migration`, ``evacuate``, ``rebalance``, ``waves`` — §4–5.
"""
