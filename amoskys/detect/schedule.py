"""The detector's retrain schedule: ``retrain`` every ``detect.retrain_every_hours``, the promoted set swapped in.

Each round runs ``retrain`` (``detect.retrain_since_hours`` of the store's telemetry plus
the analysts' verdicts; only on drift with ``detect.retrain_if_drifted``) in a child
process, so that the minutes of training neither hold the detector's micro-batches nor
share its memory. The child is spawned, not forked: a fork would copy the detector's
gRPC threads' locks in whatever state they are. The detector asks ``poll`` between
micro-batches; when a round has promoted a candidate, ``poll`` hands back that set,
loaded, for ``Detector.swap``. A round that promotes nothing removes the pipeline
output it made (a promoted set's stage 5 lives in its own). A failed round (an empty
store, say) is one line on stderr, and the next round comes on schedule.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amoskys.config import Config
from amoskys.errors import AmoskysError

HOUR_S = 3600.0


@dataclass
class Round:
    """What one finished round came to: the report's lines, and the promoted set, loaded, if any."""

    lines: list[str]
    promoted: object | None = None  # a ``cli.LiveModel``


class RetrainSchedule:
    def __init__(self, config: Config, store_path: Path, every_s: float, since_s: float, if_drifted: bool):
        self.config = config
        self.store_path = Path(store_path)
        self.every_s = every_s
        self.since_s = since_s
        self.if_drifted = if_drifted
        self.due_at = time.monotonic() + every_s
        self._child: multiprocessing.Process | None = None
        self._result = None  # the parent's end of the child's pipe

    @classmethod
    def of(cls, config: Config, store_path: Path) -> RetrainSchedule | None:
        """The schedule config.detect asks for; None when it asks for none."""
        detect = config.detect
        if detect.retrain_every_hours <= 0:
            return None
        return cls(config, store_path, detect.retrain_every_hours * HOUR_S, detect.retrain_since_hours * HOUR_S,
                   detect.retrain_if_drifted)  # fmt: skip

    @property
    def running(self) -> bool:
        return self._child is not None

    def poll(self) -> Round | None:
        """Start a round when one is due; a round that has finished since the last call, else None."""
        if self._child is None:
            if time.monotonic() >= self.due_at:
                self._start()
            return None
        if self._child.is_alive() and not self._result.poll():
            return None
        try:
            outcome = self._result.recv()
        except EOFError:  # it died without a word
            self._child.join()
            outcome = ("error", f"the retrain process exited with code {self._child.exitcode}")
        self._child.join()
        self._child, self._result = None, None
        self.due_at = time.monotonic() + self.every_s
        kind, value = outcome
        if kind == "error":
            print(f"amoskys detect: scheduled retrain failed: {value}", file=sys.stderr, flush=True)
            return Round([f"failed: {value}"])
        lines, candidate = value
        for line in lines:
            print(f"amoskys detect: retrain: {line}", flush=True)
        if candidate is None:
            return Round(lines)
        from amoskys.detect.cli import load_live_model

        return Round(lines, load_live_model(self.config, ref=candidate))

    def close(self) -> None:
        """Stop a round still running (the active registry gains whole entries only: ``Registry.copy_in``)."""
        if self._child is not None:
            self._child.terminate()
            self._child.join()
            self._child, self._result = None, None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._result, sending = context.Pipe(duplex=False)
        since = str(time.time() - self.since_s)  # epoch seconds
        self._child = context.Process(target=_round, name="amoskys-retrain", daemon=True,
                                      args=(sending, self.config, self.store_path, since, self.if_drifted))  # fmt: skip
        self._child.start()
        sending.close()  # the child's end: ours closed, a dead child shows as end of file
        print(f"amoskys detect: scheduled retrain started on the last {self.since_s / HOUR_S:g} h of telemetry",
              flush=True)  # fmt: skip


def _round(sending, config: Config, store_path: Path, since: str, if_drifted: bool) -> None:
    """The child: one ``retrain``; sends ("done", (lines, promoted candidate or None)) or ("error", message)."""
    import warnings

    from amoskys.detect.retrain import retrain

    # A daemon child has no children of its own: scikit-learn's forests train on one thread here, which leaves
    # the detector its core, and say so on every fit.
    warnings.filterwarnings("ignore", message="Loky-backed parallel loops cannot be called in a multiprocessing")
    try:
        report = retrain(config, store_path, since, if_drifted)
        lines = report.lines()
        if not report.promoted:  # a round every few hours for months: keep only what a promoted set needs
            shutil.rmtree(report.data, ignore_errors=True)
            lines.append(f"removed     {report.data} (nothing promoted from it)")
        sending.send(("done", (lines, report.candidate if report.promoted else None)))
    except AmoskysError as error:
        sending.send(("error", str(error)))
    except Exception as error:  # anything else: the detector goes on, and says what it was
        sending.send(("error", f"{type(error).__name__}: {error}"))
