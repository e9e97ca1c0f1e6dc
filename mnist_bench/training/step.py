"""The one training step, and the rates it follows: what both step runners execute.

``TrainStep`` is what one step computes: the batch gathered and deformed, the forward in
the training's precision, the loss, the backward, the step's rates from the schedule's
table, the update, max-norm, and the running loss. The eager runner calls it once per
batch; the graphed runner captures exactly it as a CUDA graph and replays it (see
``step_runners``). One function, so the two cannot drift: on the CPU stand-in a graphed
training equals its eager twin bitwise, and on CUDA they launch the same kernels.

No host sync inside: rates held as device tensors are copied from a device table by a
device step counter; rates held as floats (a CPU) are set from the host, which a graph
could not follow (``Rates.host_follows``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnist_bench.augment import Augmenter
from mnist_bench.config import TrainConfig
from mnist_bench.optimizers import Update
from mnist_bench.schedules import RateTable


class Rates:
    """The rates of each step, from the schedule's table (``schedules.rate_table``).

    The table's learning rate sets the update's; its momentum column (one-cycle's) sets what
    the optimizer's entry says one-cycle cycles in it (``cycles``: "momentum", "beta1", or
    "" for nothing, its learning rate cycled alone), and nothing else. Where the update holds
    a rate in a device tensor (CUDA), it is copied there from a device copy of the table at a
    device step counter: inside a graph too. Where it holds a float (a CPU; Adam's beta1
    under one-cycle anywhere), the host sets it from the table.
    """

    def __init__(self, table: RateTable | None, update: Update, device: torch.device, *, cycles: str) -> None:
        self.table, self.update = table, update
        self.host_step = 0
        self.device_tables: dict[str, torch.Tensor] = {}
        self.host_columns: dict[str, tuple[float, ...]] = {}  # the rates the host sets, and their columns
        self.step_no = torch.zeros((1,), dtype=torch.int64, device=device)
        if table is None:
            return
        columns = {"lr": table.lr}
        if cycles and table.momentum is not None:
            if not update.holds(cycles):  # an entry that says what its optimizer has not: never set quietly
                raise ValueError(f"one-cycle would cycle {cycles}, which this optimizer's update does not have")
            columns[cycles] = table.momentum
        for key, column in columns.items():
            if isinstance(update.rates.get(key), torch.Tensor):
                self.device_tables[key] = torch.tensor(column, dtype=torch.float32, device=device)
        self.host_columns = {k: column for k, column in columns.items() if k not in self.device_tables}

    @property
    def host_follows(self) -> bool:
        """Some rate changes per step from the host: a captured step would freeze it."""
        return self.table is not None and bool(self.host_columns)

    def advance(self) -> None:
        """Set this step's rates, then count the step."""
        if self.table is None:
            return
        if self.device_tables:
            at = self.step_no.clamp(max=len(self.table.lr) - 1)
            for key, column in self.device_tables.items():
                self.update.rates[key].copy_(column.index_select(0, at)[0])
            self.step_no.add_(1)
        if self.host_columns:
            at_host = min(self.host_step, len(self.table.lr) - 1)
            self.update.set_rates(**{key: column[at_host] for key, column in self.host_columns.items()})
        self.host_step += 1

    def state(self) -> dict[str, int]:
        """The next step's number. Where rates live on the device, the device counter: a
        graph's replays move it, and never the host's (one sync, at a resume's save)."""
        return {"step": int(self.step_no.item()) if self.device_tables else self.host_step}

    def restore(self, state: dict[str, int]) -> None:
        self.host_step = int(state["step"])
        self.step_no.fill_(self.host_step)

    def reset(self) -> None:
        self.restore({"step": 0})


class TrainStep:
    """One training step on the images at ``idx``: everything a graph captures.

    Invariant: every tensor it reads or writes (the data, the parameters and their
    gradients, the update's state and rates, the rate tables, the running loss, the
    augmentation's constants) is held by it, its update or its training, for as long as a
    graph of it may replay; ``restore`` copies into them in place.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        update: Update,
        rates: Rates,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator,
        augment: Augmenter,
        precision: str,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.model, self.config, self.update, self.rates = model, config, update, rates
        self.x, self.y, self.generator, self.augment = x, y, generator, augment
        self.forward = forward or model  # torch.compile's wrapper, with --compile
        self.autocast = precision == "bf16"
        self.params = list(model.parameters())
        # Max-norm applies to the hidden layers' weights; the output layer is left free.
        linears = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
        self.capped = linears[:-1] if config.max_norm else []
        self.loss_sum = torch.zeros((), device=x.device)

    def __call__(self, idx: torch.Tensor) -> None:
        for p in self.params:
            p.grad = None  # backward writes fresh gradients (in a graph: into its own pool)
        xb = self.augment(self.x.index_select(0, idx), self.generator)  # a gather, cheaper than indexing
        yb = self.y.index_select(0, idx)
        # No autocast weight cache: a graph must recompute the casts on every replay.
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=False):
            loss = F.cross_entropy(self.forward(xb), yb, label_smoothing=self.config.label_smoothing)
        loss.backward()
        self.rates.advance()
        self.update.step()
        if self.capped:
            with torch.no_grad():
                for weight in self.capped:
                    weight.copy_(torch.renorm(weight, p=2, dim=0, maxnorm=self.config.max_norm))  # type: ignore[arg-type]
        self.loss_sum.add_(loss.detach().float())

    def state(self) -> dict[str, Any]:
        """The update's state and the schedule's position, for resuming (weights and generator are the training's)."""
        return {"update": self.update.state(), "rates": self.rates.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.update.restore(state["update"])
        self.rates.restore(state["rates"])
