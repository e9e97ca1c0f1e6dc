"""A search: the space, the study's settings, the loops that run trials, and the ranking.

- ``space``: what a trial may choose (shipped spaces in ``spaces/*.toml``) and the one trial -> config function
- ``noise``: the validation's standard error, and what it can tell apart
- ``anytime``: a search's best accuracy so far against wall-clock seconds, and repeats' median and spread
- ``stopping``: since when a search's best has not moved beyond that noise, and the rule ``--stop-when-flat`` stops by
- ``records``: what a study and a trial store, as ``StudyRecord`` and ``TrialRecord``: written and read there alone
- ``samplers``, ``pruners``, ``objectives``: the registry of each choice of a search (``--sampler``,
  ``--pruner``, ``--objective``): what each builds or reads, its help; an unknown name is an error
- ``moasha``: multi-objective successive halving as pure math (rungs, non-dominated sort,
  epsilon-net, how many go on), which a search of several objectives is pruned by
- ``study``: a study's settings and random streams, and one trial's bookkeeping (config, seed, outcome)
- ``loop``: the study with its sampler and pruner, the one run loop (K trials in flight, one at a
  time the K = 1 case), picking a winner
- ``trial_runner``: one pass of that loop: trials asked for, judged after each epoch (a
  multi-objective one at its rungs, by ``moasha``) and told
- ``leaderboard``: a study's trials as a DataFrame, and its CSV/Markdown/JSON files
- ``promote``: the best trials of a study trained again, longer, as a study of their own
- ``capacity``: one trial's worst-case device memory, and how many trials ``--workers auto`` runs at once
- ``workers``: worker processes sharing one study through its storage (``search --workers``)
- ``job``: a whole search, what ``search`` runs: data checked, the study opened, trials run
  here or in workers, the leaderboard written

May import the root modules, ``training`` and ``storage``.
"""
