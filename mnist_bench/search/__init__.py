"""A search: the space, the study's settings, the loops that run trials, and the ranking.

- ``space``: what a trial may choose (shipped spaces in ``spaces/*.toml``) and the one trial -> config function
- ``records``: what a trial stores, as one typed ``TrialRecord``: written and read there alone
- ``study``: a study's settings and random streams, and one trial's bookkeeping (config, seed, outcome)
- ``loop``: sampler, pruner, the run loop, picking a winner
- ``inflight_loop``: the run loop with K trials in flight (``search --parallel K``)
- ``leaderboard``: a study's trials as a DataFrame, and its CSV/Markdown/JSON files
- ``promote``: the best trials of a study trained again, longer, as a study of their own

May import the root modules, ``training`` and ``storage``.
"""
