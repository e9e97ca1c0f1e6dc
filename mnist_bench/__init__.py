"""mnist-bench: find, measure and reproduce the best MLP for MNIST.

The library is plain Python over torch and Optuna; ``mnist_bench.cli`` is a thin
Typer layer on top. One module per concept:

- ``data``: MNIST files -> checked uint8 tensors -> normalized tensors on a device
- ``model``: the MLP and its frozen ``ModelConfig``
- ``train``: the trainer and its frozen ``TrainConfig``
- ``space``: the search space (studies/*.toml) and the one trial -> config function
- ``search``: the Optuna study, storage, sampler, pruner and objective
- ``leaderboard``: a study's trials as a DataFrame, and its CSV/Markdown/JSON files
- ``render``: rich tables and lines for the CLI
- ``device``: device choice and the environment recorded beside results
"""

__version__ = "0.1.0"
