"""Ordered process-parallel maps for the data stages."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")


def parallel_map(function: Callable[[Task], Result], tasks: Sequence[Task], jobs: int) -> Iterator[Result]:
    """``function`` of every task, yielded in task order, computed in ``jobs`` processes (``1``: in
    this one). Results come back in order whatever finishes first, so what a stage writes does not
    depend on ``jobs``; an error is raised for the first failing task in order."""
    if jobs <= 1 or len(tasks) <= 1:
        yield from map(function, tasks)
        return
    # fork is cheap, but unsafe once torch has started its threads: spawn then
    context: Any = multiprocessing.get_context("fork" if "torch" not in sys.modules else "spawn")
    with concurrent.futures.ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=context) as pool:
        yield from pool.map(function, tasks)
