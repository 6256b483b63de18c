"""The map's descriptors of a read, against a reference that walks the text symbol by symbol."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import language
from ffbench.hunt import descriptors


def reference(text: str) -> list[dict]:
    """Every read's descriptors, computed from the definitions with plain loops (no ffbench helpers)."""
    ops, vals = text[0::2], [int(c) for c in text[1::2]]
    n = len(ops)
    out = []
    for e in range(n):
        if ops[e] != "r":
            continue
        w = max(j for j in range(e) if ops[j] == "w")
        b = vals[w]
        between = range(w + 1, e)
        run = 0
        j = e - 1
        while j > w and ops[j] == "i" and vals[j] != b:
            run += 1
            j -= 1
        decoys = 0
        j = w - 1
        while j >= 0 and not (ops[j] == "w" and vals[j] == b):
            decoys += ops[j] == "w"
            j -= 1
        gap = 0
        while w - 1 - gap >= 0 and ops[w - 1 - gap] == "i":
            gap += 1
        out.append({
            "gap_before_write": gap,
            "opposite_since_write": sum(ops[j] == "i" and vals[j] != b for j in between),
            "opposite_run": run, "decoys": decoys, "reads_between": sum(ops[j] == "r" for j in between),
            "write_distance": e - w, "write_slot": w, "slot": e, "fraction": e / (n - 1), "length": len(text),
            "write_density": sum(ops[j] == "w" for j in range(e)) / e,
        })
    return out


def check(texts: list[str]) -> int:
    got = descriptors.describe(language.to_array(texts))
    rows = [(k, r) for k, t in enumerate(texts) for r in reference(t)]
    assert got["seq_index"].tolist() == [k for k, _ in rows]
    for name in descriptors.NAMES:
        want = [r[name] for _, r in rows]
        assert np.allclose(got[name], want), name
    return len(rows)


@pytest.mark.parametrize("p_ignore", [0.1, 0.5, 0.8, 0.95])
def test_descriptors_match_the_reference_on_random_sequences(p_ignore):
    arr = language.sample(language.FFL.from_p_ignore(p_ignore, 96), 60, 7)
    assert check(language.to_strings(arr)) > 60


def test_descriptors_of_hand_built_sequences():
    # a write at the start, 14 opposite ignores, the read
    d = descriptors.describe(language.to_array(["w0" + "i1" * 14 + "r0"]))
    assert d["opposite_since_write"].tolist() == [14] and d["opposite_run"].tolist() == [14]
    assert d["write_distance"].tolist() == [15] and d["decoys"].tolist() == [0] and d["fraction"].tolist() == [1.0]
    # three decoys (one of the bit in force before them stops the count), reads inside the run
    text = "w1w0w0i0w0w1" + "i0" * 5 + "r1" + "i0" * 3 + "i1" + "i0" * 2 + "r1"
    d = descriptors.describe(language.to_array([text]))
    assert d["decoys"].tolist() == [3, 3]
    assert d["opposite_since_write"].tolist() == [5, 10] and d["opposite_run"].tolist() == [5, 2]
    assert d["reads_between"].tolist() == [0, 1] and d["write_distance"].tolist() == [6, 13]
    assert d["slot"].tolist() == [11, 18]
    assert sum(check([t]) for t in [text, "w0" + "i1" * 14 + "r0", "w1r1", "w0w1r1i0r1w0r0"]) == 7


def test_cells_bin_the_threshold_apart():
    d = descriptors.describe(language.to_array(["w0" + "i1" * k + "r0" + "i0" * (20 - k) for k in (12, 13, 14, 15)]
                                               ))
    dim = list(descriptors.MAP_DIMENSIONS).index("opposite_since_write")
    bins = descriptors.cell_keys(d)[:, dim]
    assert bins[0] == bins[1] != bins[2] == bins[3]
    labels = descriptors.key_labels(descriptors.key_string(descriptors.cell_keys(d)[2]))
    assert labels["opposite_since_write"] == "[14,16)" and labels["decoys"] == "0"
