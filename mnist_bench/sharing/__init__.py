"""Several processes on one study or one device.

- ``workers``: worker processes sharing a study (``search --workers``)
- ``study_search``: a whole search (``search``): data checked, the study opened, trials run here or
  in workers, the leaderboard written; what the CLI command renders
- ``packing``: how many trials share a device (``--workers auto``), and the stacked-model probe

May import the root modules, ``training``, ``storage`` and ``search``.
"""
