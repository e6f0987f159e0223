"""pytest plugin registered by the ``callxml`` package (entry point ``pytest11``)."""
