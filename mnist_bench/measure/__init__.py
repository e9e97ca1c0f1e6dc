"""Figures about a machine: benchmarks, the tutorial baselines, doctor and the self-check.

- ``bench``: throughput of the trainer's step against the hardware floor, and the classic pipeline
- ``suite``: what ``mnist-bench bench`` runs and writes
- ``baselines``: the networks MNIST tutorials write by hand
- ``doctor``: does this machine train right (fast paths against eager ones), and how fast
- ``selfcheck``: the fast paths trusted on a GPU only after a one-time check there
- ``packing``: trials in processes against trials stacked into one model, measured (``bench --section packing``)
- ``methods``: search methods (sampler + pruner) against each other, by their anytime curves over seeded repeats
- ``anytime_figure``: the anytime curves as a PNG, for ``methods`` and the report's studies side by side

May import every library folder below it (``training``, ``storage``, ``search``,
``artifacts``); never ``output`` or ``cli``.
"""
