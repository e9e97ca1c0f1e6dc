"""mnist-bench: find, measure and reproduce the best MLP for MNIST.

The library is plain Python over torch and Optuna; ``mnist_bench.cli`` is a thin
Typer layer on top. One module per concept:

- ``data``: MNIST files -> checked uint8 tensors -> normalized tensors on a device
- ``model``: the MLP and its frozen ``ModelConfig``
- ``augment``: deformations of a batch on its device, and their strengths (``Deform``)
- ``config``: what a training is: the frozen ``TrainConfig`` and ``Runtime`` (precision, graphs)
- ``train``: the trainer (``Training``, an epoch at a time, resumable), optimizer and schedule
- ``step_runner``: how an epoch's steps execute: eagerly, or as a replayed CUDA graph
- ``inflight``: K trainings side by side in one process, a fixed schedule, and the lanes
  (a thread each, and a CUDA stream on a GPU, for a whole run) they train on
- ``space``: the search space (shipped ones in ``spaces/*.toml``) and the one trial -> config function
- ``study``: a study's settings, and one trial's bookkeeping (config, seed, outcome) that
  both run loops share
- ``search``: running a search: sampler, pruner, objective, the run loop, picking a winner
- ``search_inflight``: the run loop with K trials in flight (``search --parallel K``)
- ``storage``: Optuna RDB storages with heartbeats (SQLite, PostgreSQL, MySQL)
- ``stale``: trials whose worker stopped beating: waited out and retried, live ones left alone
- ``workers``: several worker processes on one study
- ``packing``: how many trials share a device (``--workers auto``), and the stacked-model
  benchmark that packing by processes was chosen against
- ``interrupt``: Ctrl-C as a flag the trainer checks between batches
- ``leaderboard``: a study's trials as a DataFrame, and its CSV/Markdown/JSON files
- ``evaluate``: final training on all 60,000 images, test metrics, saving the result
- ``checkpoint``: the checkpoint format (state_dict + JSON), save and load
- ``figures``: confusion-matrix and prediction-grid PNGs
- ``baselines``: the networks MNIST tutorials write by hand
- ``predict``: image files -> MNIST-style digits -> labels
- ``demo``: a checkpoint as a self-contained draw-a-digit page (template ``demo_page.html``)
- ``export``: a checkpoint as an ONNX model that takes raw pixels
- ``bench`` and ``bench_suite``: timing primitives, and what ``mnist-bench bench`` runs
- ``report`` and ``report_plots``: a study's HTML page, its PNG and interactive figures
- ``render``: rich tables and lines for the CLI
- ``device``: device choice, the environment recorded beside results, and device faults
- ``doctor``: does this machine train right (fast paths against eager ones), and how fast
- ``trust``: the fast paths trusted on a GPU only after a one-time self-check there
- ``cli``: the Typer commands, one module per group of commands; ``cli.docs`` writes them
  out as docs/cli.md
"""

__version__ = "0.2.0"
