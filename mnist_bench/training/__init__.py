"""Training one configuration: the trainer, how its steps execute, and the device it runs on.

- ``trainer``: ``Training`` (an epoch at a time, resumable) and ``train`` (one to the end)
- ``start``: what a training starts from (initial weights, the rate table: host work) and its step
- ``step``: the one training step (``TrainStep``) and the rates it follows from the schedule's table
- ``step_runners``: how an epoch of that step executes: eagerly, or replayed as a CUDA graph
- ``lanes``: K trainings side by side in one process (a thread each, and a CUDA stream on a GPU)
- ``device``: device choice, the environment recorded beside results, device faults, a failed capture
- ``timing``: timed regions and one image's latency

May import the root modules (``config``, ``data``, ``model``, ``augment``, ``errors``,
``interrupt``) and nothing else of the package: no Optuna, no storage, no CLI.
"""
