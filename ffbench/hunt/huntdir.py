"""The hunt directory: the only code that knows its file names.

::

    state.json        identity (config without the budgets + model fingerprint) and everything the
                      hunt needs to continue: rounds done, reads spent, bandit, pool, glitches,
                      the map's cells and shapes, the reads labelled for the stress lines,
                      the estimator's proposal; rewritten atomically after every round
    glitches.parquet  the confirmed glitching sequences, ``text`` layout (``ffbench run --data`` replays it)
    hunt.json         the summary: budget spent, distinct glitches, yields, the i.i.d. comparison, the estimate
    samples.parquet   ``--estimate`` only: one row per read scored for the estimate, with its ``weight``
    rounds/           ``--estimate`` only, while under way: one parquet file of reads per round
    requests.sqlite   API providers: every response by request hash (a resumed hunt never re-sends one)
    .lock             one hunt at a time (.lock.owner names the holder's pid meanwhile)

Every file is written under a temporary name and renamed into place, so a hunt killed at any
moment resumes from its last finished round, and never mixes the work of two identities.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ffbench.io import atomic_path, read_json, write_json
from ffbench.workdir import WorkDir


class HuntDir(WorkDir):
    KIND = "hunt directory"
    FLAG = "--out"
    STATE = "state.json"
    GLITCHES = "glitches.parquet"
    SUMMARY = "hunt.json"
    SAMPLES = "samples.parquet"
    ROUNDS = "rounds"

    glitches = property(lambda self: self.path / self.GLITCHES)
    summary = property(lambda self: self.path / self.SUMMARY)
    samples = property(lambda self: self.path / self.SAMPLES)
    state_file = property(lambda self: self.path / self.STATE)

    # ------------------------------------------------------------------ state
    def read_state(self) -> dict | None:
        return read_json(self.state_file, "hunt state") if self.state_file.is_file() else None

    def write_state(self, state: dict) -> None:
        write_json(self.state_file, state)

    def holds_other_files(self) -> bool:
        """Anything but the lock, unfinished round files (a first round cut short) and the response
        cache (keyed by the whole request, so any hunt may reuse it) in a directory without a state:
        not ours to overwrite."""
        ours = (self.LOCK, self.OWNER, self.ROUNDS, *self.cache_files())
        return self.path.is_dir() and any(p.name not in ours for p in self.path.iterdir())

    def clear_rounds(self) -> None:
        shutil.rmtree(self.path / self.ROUNDS, ignore_errors=True)

    def remove_if_empty(self) -> None:
        """After a hunt that kept nothing (no finished round): leave no directory behind."""
        if self.path.is_dir() and not self.state_file.exists():
            self.clear_rounds()
        leftovers = [p for p in self.path.iterdir() if p.name not in (self.LOCK, self.OWNER)] \
            if self.path.is_dir() else []
        if not leftovers:
            shutil.rmtree(self.path, ignore_errors=True)

    # ------------------------------------------------------------------ estimate samples
    def _round_file(self, index: int) -> Path:
        return self.path / self.ROUNDS / f"{index:06d}.parquet"

    def write_round(self, index: int, table) -> None:
        import pyarrow.parquet as pq

        path = self._round_file(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    def read_rounds(self, indices) -> list:
        import pyarrow.parquet as pq

        return [pq.read_table(self._round_file(i)) for i in indices if self._round_file(i).is_file()]

    def write_samples(self, table) -> None:
        import pyarrow.parquet as pq

        with atomic_path(self.samples) as tmp:
            pq.write_table(table, tmp, compression="zstd")

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary, summary)
