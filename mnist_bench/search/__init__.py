"""A search: the space, the study's settings, the loops that run trials, and the ranking.

- ``space``: what a trial may choose (shipped spaces in ``spaces/*.toml``) and the one trial -> config function
- ``records``: what a trial stores, as one typed ``TrialRecord``: written and read there alone
- ``study``: a study's settings and random streams, and one trial's bookkeeping (config, seed, outcome)
- ``loop``: sampler, pruner, the one run loop (K trials in flight, one at a time the K = 1 case), picking a winner
- ``running``: one pass of that loop: trials asked for, judged after each epoch and told
- ``leaderboard``: a study's trials as a DataFrame, and its CSV/Markdown/JSON files
- ``promote``: the best trials of a study trained again, longer, as a study of their own

May import the root modules, ``training`` and ``storage``.
"""
