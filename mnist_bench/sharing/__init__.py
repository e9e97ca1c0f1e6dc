"""Several processes on one study or one device.

- ``workers``: worker processes sharing a study (``search --workers``)
- ``packing``: how many trials share a device (``--workers auto``), and the stacked-model probe

May import the root modules, ``training``, ``storage`` and ``search``.
"""
