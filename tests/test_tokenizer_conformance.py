"""Tokenizer conformance: on real tokenizer families (``tests/tokenizer_families.py``) times every
non-chat rendering, ffbench's ``hf/`` dense and per-read scoring give each read the prediction and
margin of an independent reference scorer, and every scored token sequence spells the sequence's
own text.

The reference is written here from the rule alone, with none of ffbench's code: for each read and
each answer, tokenize the text before the answer together with the answer, split where the answer
begins (moved back to the start of a token that also covers text before it), and sum the answer
tokens' log-probabilities from a plain forward pass of the whole encoding. The tiny random Llamas
have a large initialisation, so logits depend on context and a scorer that reads the wrong
positions or the wrong tokens disagrees with the reference on many reads.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import HAS_TORCH
from tests.tokenizer_families import FAMILIES, build_model

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="torch and transformers not installed (pip install 'ffbench[hf]')")

RENDERS = ("symbolic", "symbolic_spaced", "lightswitch")


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request, tmp_path_factory):
    return request.param, build_model(request.param, tmp_path_factory.mktemp("tok") / request.param)


def _rendered(render: str, num: int = 5, length: int = 40):
    from ffbench import language
    from ffbench.render import load_template
    from ffbench.render import render as render_one

    arr = language.sample(language.FFL(length, 0.25, 0.25, 0.5), num, seed=11)
    template = load_template(render)
    return template, [render_one(row, template) for row in arr]


def _reference(path, rendered) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(margin, correct, spelled text) per read, from the rule and plain forward passes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    margins, spelled = [], []
    for r in rendered:
        for (start, _), target in zip(r.spans.tolist(), r.targets.tolist()):
            # BOS once: a text a chat template began with BOS gets no second one from the tokenizer.
            special = not (tok.bos_token and r.text.startswith(tok.bos_token))
            encs = [tok(r.text[:start] + c, return_offsets_mapping=True, add_special_tokens=special) for c in r.choices]
            cut = []
            for e in encs:  # first token that reaches past the answer's start
                cut.append(next(j for j, (a, b) in enumerate(e["offset_mapping"]) if b > a and b > start))
            j = min(cut)
            while any(e["input_ids"][:j] != encs[0]["input_ids"][:j] for e in encs):
                j -= 1
            width = max(len(e["input_ids"]) for e in encs)  # right padding leaves causal positions alone
            batch = torch.tensor([e["input_ids"] + [0] * (width - len(e["input_ids"])) for e in encs])
            with torch.no_grad():
                logp = torch.log_softmax(lm(batch).logits.float(), dim=-1)
            lps = [sum(float(logp[k, t - 1, e["input_ids"][t]]) for t in range(j, len(e["input_ids"])))
                   for k, e in enumerate(encs)]
            others = [lp for k, lp in enumerate(lps) if k != target]
            margins.append(lps[target] - max(others))
            spelled.append(tok.decode(encs[target]["input_ids"], skip_special_tokens=True))
    margins = np.array(margins)
    return margins, margins > 0, spelled


@pytest.mark.parametrize("render", RENDERS)
def test_hf_dense_and_per_read_match_the_reference(family_model, render):
    from ffbench import scoring
    from ffbench.backends.hf import HFBackend

    family, path = family_model
    template, rendered = _rendered(render)
    margin, correct, spelled = _reference(path, rendered)
    n = len(margin)
    assert n >= 20, n
    # The random model must not be trivial: it gets some reads right and some wrong.
    assert 0 < correct.sum() < n, (family, render, correct.sum(), n)
    # Each reference token sequence spells the sequence's own text up to the answer's end.
    ends = [r.text[: e] for r in rendered for e in r.spans[:, 1].tolist()]
    for got, want in zip(spelled, ends):
        assert got.strip() == want.strip(), (family, render, got[-30:], want[-30:])
    backend = HFBackend(str(path))
    dense = scoring.score(backend, rendered, template, "choice")
    per_read = scoring.score(backend, rendered, template, "choice", per_read=True)
    targets = np.concatenate([r.targets for r in rendered])
    for name, out in (("dense", dense), ("per-read", per_read)):
        np.testing.assert_array_equal(out.prediction == targets, correct, err_msg=f"{family} {render} {name}")
        np.testing.assert_allclose(out.margin, margin, atol=2e-3, err_msg=f"{family} {render} {name}")
    # Dense stays dense: on these families every read is decided by the one pass.
    assert not dense.per_read.any(), (family, render, int(dense.per_read.sum()))


@pytest.mark.parametrize("family", ["sp-legacy", "tekken"])
def test_run_is_dense_and_the_dry_run_and_render_say_so(family, tmp_path, capsys, monkeypatch):
    """``ffbench run`` on a real tokenizer: every read decided by the one pass (per_read_fraction 0
    in results.json), the dry run counts exactly the requests and tokens the run sends, and
    ``render --model`` says how the answers tokenize in context and that no read falls back."""
    import json

    from tests.test_cli import run_main

    model = build_model(family, tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFBENCH_REGISTRY", str(tmp_path / "registry.sqlite"))
    args = ["run", "--model", f"hf/{model}", "--suite", "in_dist", "--length", "64", "--num", "6",
            "--render", ",".join(RENDERS), "--no-progress", "--output-dir", "r"]
    code, out, err = run_main(capsys, *args, "--dry-run")
    assert code == 0, err
    total = [line for line in out.splitlines() if line.startswith("total")][0].split()
    code, out, err = run_main(capsys, *args)
    assert code == 0, err
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [c["per_read_fraction"] for c in results["results"]] == [0.0] * len(RENDERS)
    assert "request of their own" not in out
    assert int(total[1].replace(",", "")) == results["usage"]["requests"] == 6 * len(RENDERS)
    assert int(total[2].replace(",", "")) == results["usage"]["prompt_tokens"]
    code, out, err = run_main(capsys, "render", "--model", f"hf/{model}", "--render", "lightswitch", "--length", "16")
    assert code == 0, err
    assert "0 of 3 reads need a request of their own" in out, out
    assert "# answers in context: ' off' -> [" in out, out
