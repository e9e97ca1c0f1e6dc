"""Training one configuration: the trainer, how its steps execute, and the device it runs on.

- ``trainer``: ``Training`` (an epoch at a time, resumable) and ``train`` (one to the end)
- ``runners``: how an epoch's steps execute: eagerly, or replayed as a CUDA graph
- ``lanes``: K trainings side by side in one process (a thread each, and a CUDA stream on a GPU)
- ``device``: device choice, the environment recorded beside results, device faults
- ``timing``: timed regions and one image's latency

May import the root modules (``config``, ``data``, ``model``, ``augment``, ``errors``,
``interrupt``) and nothing else of the package: no Optuna, no storage, no CLI.
"""
