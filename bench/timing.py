"""How every benchmark here times: contenders take turns, warm-up rounds first, medians after.

Taking turns (a round runs each contender once) means a machine that gets busier
half-way slows all of them alike, so their ratio holds where absolute times would
not. The warm-up rounds are not timed: first calls pay for lazy imports, caches,
allocator growth and (on a GPU) kernel selection that a long run pays once.
"""

import resource
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of the child processes it has waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class Timed(Generic[T]):
    """One contender's timed rounds, and what every round returned (warm-up rounds first)."""

    wall: list[float]
    cpu: list[float]
    outputs: list[T]

    @property
    def wall_s(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_s(self) -> float:
        """Median CPU seconds: with one thread, what a round costs on a core of its own,
        however busy the machine is."""
        return statistics.median(self.cpu)

    @property
    def last(self) -> T:
        return self.outputs[-1]


def interleaved(
    runs: Mapping[str, Callable[[], T]],
    repeats: int,
    warmup: int = 1,
    synchronize: Callable[[], None] | None = None,
) -> dict[str, Timed[T]]:
    """``warmup`` untimed rounds, then ``repeats`` timed ones, each calling every run in turn.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) is called before and after each
    timed call, so that work queued on a device is counted where it was asked for.
    """
    if repeats < 1:
        raise ValueError(f"need at least one timed round, got repeats={repeats}")
    timed: dict[str, Timed[T]] = {name: Timed([], [], []) for name in runs}
    for round_ in range(warmup + repeats):
        for name, run in runs.items():
            if synchronize is not None:
                synchronize()
            wall, cpu = time.perf_counter(), cpu_seconds()
            output = run()
            if synchronize is not None:
                synchronize()
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            timed[name].outputs.append(output)
            if round_ >= warmup:
                timed[name].wall.append(wall)
                timed[name].cpu.append(cpu)
    return timed
