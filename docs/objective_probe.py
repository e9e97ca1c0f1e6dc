"""Usage: python docs/objective_probe.py DATA_DIR STORAGE STUDY [STUDY ...]

Which of a trial's validation figures should pick a search's winner: its best epoch (the
maximum over noisy epochs, biased up), its last epoch, or the mean of its last three? For
each study, the complete trials are ranked by each rule; each rule's winner is retrained
on all 60,000 training images for its own epochs with 3 seeds and tested once. Printed:
per study and rule, the winner, its validation figure and its retrained test accuracy,
then each rule's mean over the studies. The searches themselves are not rerun per rule
(their sampler learned from the best epoch): this measures the choice of winner only.
"""

import statistics
import sys
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from mnist_bench.artifacts.final import FinalData, train_and_test
from mnist_bench.search.loop import trial_config
from mnist_bench.search.records import TrialRecord

RULES = {
    "best epoch": lambda accs: max(accs),
    "last epoch": lambda accs: accs[-1],
    "mean of last 3": lambda accs: statistics.fmean(accs[-3:]),
}
SEEDS = [0, 1, 2]

optuna.logging.set_verbosity(optuna.logging.WARNING)
data_dir, storage, names = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
data = FinalData.load(data_dir, torch.device("cpu"))
tested: dict[tuple[str, int], float] = {}
by_rule: dict[str, list[float]] = {rule: [] for rule in RULES}
for name in names:
    study = optuna.load_study(study_name=name, storage=storage)
    # Each complete trial's epoch-end accuracies (a study judged N times an epoch reports
    # more often; only the epochs' ends are its accuracies).
    epochs = {
        t.number: TrialRecord.of(t).val_accs for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if epochs[t.number]]
    for rule, score in RULES.items():
        winner = max(complete, key=lambda t: score(epochs[t.number]))
        accs = list(epochs[winner.number])
        if (name, winner.number) not in tested:
            config = trial_config(study, winner)
            report = train_and_test(config, data.device_data, SEEDS)
            tested[(name, winner.number)] = report.mean
        test = tested[(name, winner.number)]
        by_rule[rule].append(test)
        print(
            f"{name}  {rule:15s} trial {winner.number:3d}  val {score(accs):.4f}  "
            f"test {test:.4f} (mean of {len(SEEDS)} seeds, {len(accs)} epochs)",
            flush=True,
        )
print()
for rule, tests in by_rule.items():
    print(f"{rule:15s} mean retrained test accuracy over {len(tests)} studies: {statistics.fmean(tests):.4f}")
