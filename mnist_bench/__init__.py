"""mnist-bench: find, measure and reproduce the best MLP for MNIST.

The library is plain Python over torch and Optuna; ``mnist_bench.cli`` is a thin Typer
layer on top. The folders are the architecture, each one a layer that imports only the
layers below it (each folder's docstring says what it holds and what it may import):

- the root modules, what everything else builds on:
  ``data`` (MNIST files -> checked uint8 tensors -> normalized tensors on a device),
  ``model`` (the MLP and its frozen ``ModelConfig``), ``augment`` (deformations of a
  batch on its device, and their registry), ``optimizers`` and ``schedules`` (the registry
  of each choice: declared once, read by config, space, CLI and checkpoints), ``config``
  (what a training is: ``TrainConfig`` and ``Runtime``, with the registries of a runtime's
  precisions and steps modes),
  ``errors`` and ``interrupt`` (Ctrl-C as a flag the trainer checks between batches)
- ``training``: the trainer, how its steps execute (eager or a CUDA graph), trainings side
  by side in lanes, the device, timing
- ``storage``: Optuna's storages with heartbeats, stopped workers' trials, trial counts, and the
  one module that uses Optuna's private API
- ``speedrun``: fixed recipes (shipped as package data) timed to a test accuracy over seeded
  runs, airbench's protocol; it imports nothing of ``search`` or ``storage``
- ``search``: the search space, the registries of samplers, pruners and objectives, a
  study's settings, trial records, the search loop, worker processes on one study, a whole
  search as one call, leaderboard, promote, a trial as a speedrun recipe
- ``artifacts``: final training and test, checkpoints, predict, demo page, ONNX export
- ``measure``: bench, the tutorial baselines, doctor, and the GPU self-check
- ``output``: console tables and the HTML report
- ``cli``: the Typer commands, one module per group of commands; ``cli.docs`` writes them
  out as docs/cli.md
"""

__version__ = "0.2.0"
# The version of the trainer's random streams: what a seed gives (a trial's parameters,
# weights, batches and deformations). It is the package version that last changed them,
# and changes only with a change that alters what a seed gives, so a study resumed by a
# later version with the same streams repeats its seeded trials. 0.1.0 had its own streams
# and 0.2.0 changed them; studies those two made store only ``__version__``, which then
# names their streams as well (see ``search.records.StudyRecord``).
STREAMS_VERSION = "0.2.0"
