"""Storage backends: ``memory``, ``sqlite`` (the embedded default) and ``postgres``.

Each is the shared bridge (``trioqueue.Backend``) around a driver of the
``trioqueue.Driver`` protocol; see ``docs/drivers.md`` to write your own.
"""
