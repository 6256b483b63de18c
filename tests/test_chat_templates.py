"""Chat templates for local models, BOS exactly once, and the dry run's token counts, on real
transformers models: a tiny random Llama whose character tokenizer adds BOS and carries a chat
template (a Jinja string in its tokenizer config).

What the model receives is recorded at the model itself (the token ids handed to the forward pass
and to ``generate``) and compared with ``tokenizer.apply_chat_template`` token for token.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ffbench import api, backends, language, prompting, render, runner
from ffbench.backends.tokenized import encode
from ffbench.errors import FFBenchError
from tests.conftest import needs_torch

pytestmark = needs_torch

WITH_BOS = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
WITHOUT_BOS = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
               "{% if add_generation_prompt %}[assistant] {% endif %}")
OPENS_THINKING = WITH_BOS.replace("<|assistant|>\n", "<|assistant|>\n<think>")
BITS = "01"
BASE = dict(suites=["in_dist"], lengths=[64], num=6, batch_size=3)


def chat_model(root: Path, name: str, template: str | None, max_positions: int = 2048, chars: str | None = None,
               seed: int = 0) -> Path:
    """The tiny Llama (BOS added by its tokenizer) with ``template`` stored in tokenizer_config.json;
    ``chars`` narrows its vocabulary (other characters read as the unknown token)."""
    from transformers import AutoTokenizer

    from tests.models import build_tiny_model

    extra = {"chars": chars} if chars else {}
    path = build_tiny_model(root / name, "llama", max_positions=max_positions, seed=seed, **extra)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = template
    tok.save_pretrained(path, save_jinja_files=False)  # the template as a string in the tokenizer config
    assert ("chat_template" in json.loads((path / "tokenizer_config.json").read_text())) == (template is not None)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat-models")
    return {"bos": chat_model(root, "bos", WITH_BOS), "plain": chat_model(root, "plain", WITHOUT_BOS),
            "none": chat_model(root, "none", None),
            # A vocabulary of the two bits (and the special tokens) and weights whose replies are full of bits.
            "bits": chat_model(root, "bits", WITH_BOS, chars=BITS, seed=3),
            "think": chat_model(root, "think", OPENS_THINKING, chars=BITS, seed=3)}


def config(model: Path, **over) -> runner.RunConfig:
    return runner.RunConfig(model=backends.normalize(f"hf/{model}"), **{**BASE, **over})


class Recorder:
    """A real HFBackend whose forward passes and generate calls note the token ids they receive."""

    def __init__(self, model: Path):
        self.ref = backends.resolve(f"hf/{model}")
        self.backend = self.ref.load()
        self.forward: list[list[int]] = []
        self.generated: list[list[int]] = []
        self.replies: dict[tuple[int, ...], list[int]] = {}  # prompt ids -> the tokens generated after them
        forward, generate = self.backend._forward_logprobs, self.backend.lm.generate

        def record_forward(seqs, positions):
            self.forward += [list(s) for s in seqs]
            return forward(seqs, positions)

        def record_generate(**kwargs):
            prompts = kwargs["input_ids"].tolist()
            self.generated += prompts
            out = generate(**kwargs)
            for row, p in enumerate(prompts):
                self.replies[tuple(p)] = out[row, len(p):].tolist()
            return out

        self.backend._forward_logprobs = record_forward
        self.backend.lm.generate = record_generate
        self.ref.load = lambda: self.backend

    def run(self, cfg: runner.RunConfig, out: Path):
        self.forward, self.generated, self.replies = [], [], {}
        return runner.run(cfg, str(out), self.ref, progress=False, echo=lambda m: None)

    def ended(self, cfg: runner.RunConfig) -> list[bool]:
        """Per read of a one-cell greedy chat run, in sample order: did its reply end with the
        end-of-text token before the budget (rather than being cut)?"""
        tok = self.backend.tokenizer
        options = prompting.PromptOptions.from_config(cfg)
        template = render.load_template(cfg.renders[0])
        fmt = options.format(template, tok)
        out = []
        for seq in sequences(cfg.num):
            r = render.render(seq, template)
            for j in range(len(r.targets)):
                ids = encode(tok, [fmt.question(r.prompt(j) + template.ask)])[0][0]
                out.append(tok.eos_token_id in self.replies[tuple(ids)])
        return out


def sequences(n: int = BASE["num"]) -> np.ndarray:
    return language.sample(language.FFL.from_p_ignore(language.SUITES["in_dist"].p_ignore, 64), n,
                           language.SUITES["in_dist"].seed)


def samples(out: Path):
    import pandas as pd

    return pd.read_parquet(out / "samples.parquet")


# ----------------------------------------------------------------------------- BOS
@pytest.mark.parametrize("name", ["bos", "plain"])
def test_bos_exactly_once_whatever_the_template_does(models, name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models[name])
    assert tok("w0")["input_ids"][0] == tok.bos_token_id  # the tokenizer adds BOS to any text
    fmt = prompting.PromptOptions().format(render.load_template("chat"), tok)
    assert fmt.chat
    text = fmt.question("w 0 r")
    ids = encode(tok, [text])[0][0]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    templated = tok.apply_chat_template(fmt.messages("w 0 r"), add_generation_prompt=True,
                                        return_dict=True)["input_ids"]
    if name == "bos":  # the template writes BOS: exactly the template's tokens, not one BOS more
        assert text.startswith(tok.bos_token) and ids == templated
        assert tok(text)["input_ids"][:2] == [tok.bos_token_id] * 2  # what a plain tokenizer call would send
    else:  # the template does not: the tokenizer's BOS, then the template's tokens
        assert not text.startswith(tok.bos_token) and ids == [tok.bos_token_id] + templated


# ----------------------------------------------------------------------------- what the model receives
@pytest.mark.parametrize("name", ["bos", "plain"])
def test_prompts_are_the_chat_template_token_for_token(models, name, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models[name])
    bos = [] if name == "bos" else [tok.bos_token_id]
    rec = Recorder(models[name])
    template = render.load_template("chat")
    rendered = [render.render(seq, template) for seq in sequences()]

    rec.run(config(models[name], renders=["chat"], scorings=["choice"]), tmp_path / "choice")
    expected = [bos + tok.apply_chat_template([{"role": "user", "content": r.text}], return_dict=True)["input_ids"]
                for r in rendered]
    assert sorted(rec.forward) == sorted(expected)  # one dense pass per sequence: the conversation holding it

    rec.run(config(models[name], renders=["chat"], scorings=["greedy"], system_prompt="Answer with one bit.",
                   max_new_tokens=3), tmp_path / "greedy")
    questions = [r.prompt(j) + template.ask for r in rendered for j in range(len(r.targets))]
    expected = [bos + tok.apply_chat_template([{"role": "system", "content": "Answer with one bit."},
                                               {"role": "user", "content": q}], add_generation_prompt=True,
                                              return_dict=True)["input_ids"]
                for q in questions]
    assert rec.forward == [] and sorted(rec.generated) == sorted(expected)  # one question per read, assistant turn open
    rows = samples(tmp_path / "greedy")
    assert len(rows) == len(questions) and rows.per_read.all() and rows.output.notna().all()


def test_raw_text_unless_a_template_applies(models, tmp_path):
    template = render.load_template("chat")
    text = render.render(sequences(1)[0], template).text
    from transformers import AutoTokenizer

    for name, option, templated in [("none", None, False), ("bos", "none", False), ("bos", None, True)]:
        tok = AutoTokenizer.from_pretrained(models[name])
        fmt = prompting.PromptOptions(chat_template=option).format(template, tok)
        assert fmt.chat == templated, (name, option)
        assert (fmt.teacher_forced(render.render(sequences(1)[0], template)).text == text) != templated
    # Renderings that are not chat instructions stay raw text even when the model has a template.
    tok = AutoTokenizer.from_pretrained(models["bos"])
    assert not prompting.PromptOptions().format(render.load_template("symbolic"), tok).chat
    rec = Recorder(models["bos"])
    rec.run(config(models["bos"], renders=["symbolic"], scorings=["choice"]), tmp_path / "sym")
    assert sorted(rec.forward) == sorted([tok.bos_token_id] + [tok.convert_tokens_to_ids(c) for c in s]
                                         for s in language.to_strings(sequences()))


def test_a_template_file_replaces_the_tokenizers_and_is_part_of_the_run_identity(models, tmp_path):
    from transformers import AutoTokenizer

    path = tmp_path / "mine.jinja"
    path.write_text(WITHOUT_BOS)
    value, sha = prompting.resolve_chat_template(str(path))
    assert value == str(path.resolve()) and len(sha) == 64
    tok = AutoTokenizer.from_pretrained(models["bos"])
    fmt = prompting.PromptOptions(value, chat_template_sha256=sha).format(render.load_template("chat"), tok)
    assert fmt.question("w 0 r").startswith("[user] w 0 r")
    cfg = config(models["bos"], renders=["chat"], scorings=["choice"], chat_template=value, chat_template_sha256=sha,
                 num=2)
    rec = Recorder(models["bos"])
    res = rec.run(cfg, tmp_path / "run")
    assert res.results[0].variant.startswith("chat_template=")
    assert all(ids[:2] == [tok.bos_token_id] + tok("[", add_special_tokens=False)["input_ids"] for ids in rec.forward)
    path.write_text(WITHOUT_BOS.replace("[assistant]", "[bot]"))  # edited: another run, refused without --rescore
    _, sha2 = prompting.resolve_chat_template(str(path))
    with pytest.raises(FFBenchError, match="chat_template_sha256"):
        rec.run(config(models["bos"], renders=["chat"], scorings=["choice"], chat_template=value,
                       chat_template_sha256=sha2, num=2), tmp_path / "run")


# ----------------------------------------------------------------------------- exact dense scoring
@pytest.mark.parametrize("rendering", ["chat", "lightswitch_chat"])
def test_dense_scoring_of_a_templated_conversation_equals_per_read_scoring(models, rendering, tmp_path):
    rec = Recorder(models["bos"])
    cfg = dict(renders=[rendering], scorings=["choice"], system_prompt="Be exact.")
    rec.run(config(models["bos"], **cfg), tmp_path / "dense")
    rec.run(config(models["bos"], per_read=True, **cfg), tmp_path / "per_read")
    dense, per_read = samples(tmp_path / "dense"), samples(tmp_path / "per_read")
    assert len(dense) == len(per_read) == sum(len(language.extract_reads(s[None])) for s in sequences())
    assert per_read.per_read.all()
    if rendering == "chat":  # " 0" / " 1" differ in their last token: every read from the one pass
        assert not dense.per_read.any()
    else:  # " on" is not one token away from " off": those reads are re-scored per read, exactly
        assert dense.per_read.sum() == (dense.target == 1).sum()
    assert (dense.prediction == per_read.prediction).all()
    gap = (dense.margin - per_read.margin).abs().max()
    assert gap < 1e-5  # float32 kernels on sequences of other lengths
    assert dense.margin.abs().min() > 10 * gap  # so the verdicts are not decided by float noise


# ----------------------------------------------------------------------------- dry run
def test_dry_run_counts_exactly_the_tokens_the_backend_sends(models, tmp_path):
    cfg = dict(renders=["symbolic", "chat", "lightswitch_chat"], scorings=["choice", "greedy"], max_new_tokens=2,
               system_prompt="Be exact.")
    run_args = dict(suite="in_dist", lengths=[64], num=BASE["num"], batch_size=BASE["batch_size"],
                    render=cfg["renders"], scoring=cfg["scorings"], max_new_tokens=2, system_prompt="Be exact.")
    dry = api.preflight(f"hf/{models['bos']}", price_in=1.0, price_out=4.0, **run_args)
    assert not (tmp_path / "run").exists() and dry.exact
    res = Recorder(models["bos"]).run(config(models["bos"], **cfg), tmp_path / "run")
    assert dry.requests == res.usage["requests"]
    assert dry.prompt_tokens == res.usage["prompt_tokens"]
    assert dry.generation_budget == sum(c.generation_budget for c in dry.cells) == 2 * sum(
        c.reads for c in res.results if c.scoring == "greedy" and c.render != "symbolic")
    assert res.usage["completion_tokens"] <= dry.generation_budget
    assert dry.cost() == pytest.approx((dry.prompt_tokens * 1.0 + dry.generation_budget * 4.0) / 1e6)
    modes = {(c.cell.split()[3], c.cell.split()[4]): (c.mode, c.prompt) for c in dry.cells}
    assert modes[("chat", "greedy")] == ("generation", "chat template")
    assert modes[("symbolic", "greedy")] == ("dense", "raw")
    assert "tokens counted with the model's own tokenizer" in str(dry)


def test_dry_run_cli_writes_nothing_and_exits_0(models, tmp_path, capsys):
    from ffbench.cli import main

    out = tmp_path / "never"
    main(["run", "--model", f"hf/{models['bos']}", "--suite", "in_dist", "--length", "64", "--num", "3",
          "--render", "chat", "--dry-run", "--price-in", "3", "--output-dir", str(out), "--no-record"])  # exit 0
    text = capsys.readouterr().out
    assert "chat template" in text and "cost (USD)" in text and "total" in text
    assert not out.exists()


def test_a_prompt_beyond_the_context_is_refused_in_one_line(models, tmp_path):
    path = chat_model(tmp_path, "short", WITH_BOS, max_positions=512)
    ref = backends.resolve(f"hf/{path}")
    cfg = config(path, renders=["chat"], scorings=["greedy"], max_new_tokens=200, num=2)
    dry = runner.dry_run(cfg, ref)
    assert not dry.fits and dry.longest > 512 and "does not fit" in str(dry)
    with pytest.raises(FFBenchError) as exc:  # the first sequence's raw text fits; the templated question does not
        runner.run(cfg, str(tmp_path / "run"), ref, progress=False, echo=lambda m: None)
    message = str(exc.value)
    assert "\n" not in message and "does not fit the context" in message and "never truncates" in message


# ----------------------------------------------------------------------------- replies
def test_replies_cut_by_the_budget_are_truncated_and_kept(models, tmp_path):
    import re

    rec = Recorder(models["bos"])
    cfg = config(models["bos"], renders=["chat"], scorings=["greedy"], max_new_tokens=3)
    res = rec.run(cfg, tmp_path / "run")
    rows = samples(tmp_path / "run")
    named = rows.output.map(lambda t: re.search("[01]", t) is not None)
    ended = np.array(rec.ended(cfg))
    assert (rows.invalid == ~named).all() and (~named).sum() > 0
    assert (rows.truncated == (~named & ~ended)).all()  # cut by the budget before naming a bit, not ended by the model
    assert all(len(r) <= 3 for r in rec.replies.values())
    assert res.results[0].truncated == int(rows.truncated.sum()) and res.results[0].invalid == int(rows.invalid.sum())
    assert res.usage["completion_tokens"] <= 3 * len(rows)


def test_a_template_that_opens_reasoning_reads_the_answer_after_it(models, tmp_path):
    """A template that ends the question with <think> (as reasoning models' templates do): the
    reply reasons until </think>. The tiny model never writes it, so none of its replies names an
    answer, although they are full of bits, which the same model without <think> gives as answers."""
    runs = {}
    bits_chat = tmp_path / "bits_chat.yaml"  # a chat rendering in the models' two characters (else it is refused)
    bits_chat.write_text('chat: true\nwrite: "1{value}"\nignore: "0{value}"\nread: "1{answer}"\nanswers: "{value}"\n'
                         'demo_separator: "0"\nanswer_pattern: "([01])"\n')
    for name in ("bits", "think"):
        rec = Recorder(models[name])
        cfg = config(models[name], renders=[str(bits_chat)], scorings=["greedy"], max_new_tokens=2,
                     reasoning_budget=6)
        res = rec.run(cfg, tmp_path / name)
        eos = rec.backend.tokenizer.eos_token_id
        assert all(len(r) == 8 or eos in r for r in rec.replies.values())  # budget = answer 2 + reasoning 6
        runs[name] = (res, samples(tmp_path / name), np.array(rec.ended(cfg)))
    res, rows, _ = runs["bits"]
    assert (~rows.invalid).sum() > len(rows) // 2 and rows.output.str.contains("[01]").mean() > 0.5
    res, rows, ended = runs["think"]
    assert rows.output.str.contains("[01]").mean() > 0.5 and not rows.output.str.contains("</think>").any()
    assert rows.invalid.all() and (rows.prediction == -1).all()
    assert (rows.truncated == ~ended).all()
    assert res.results[0].truncated == int(rows.truncated.sum()) and res.results[0].errors == len(rows)


def test_dense_greedy_reads_keep_what_the_model_said(models, tmp_path):
    Recorder(models["none"]).run(config(models["none"], renders=["symbolic"], scorings=["greedy"]), tmp_path / "run")
    rows = samples(tmp_path / "run")
    assert rows.output.notna().all() and not rows.per_read.any()
    named = rows[~rows.invalid]
    assert (named.output == named.prediction.map(str)).all()  # the continuation named this answer
    assert not rows[rows.invalid].output.isin(["0", "1"]).any()  # ...or left every answer, with what it said


def test_render_prints_the_exact_text_and_token_count(models, capsys):
    from transformers import AutoTokenizer

    from ffbench.cli import main

    tok = AutoTokenizer.from_pretrained(models["bos"])
    main(["render", "--model", f"hf/{models['bos']}", "--render", "chat", "--length", "16", "--seed", "4",
          "--scoring", "greedy", "--system-prompt", "Be exact."])
    out = capsys.readouterr().out
    head, rest = out.split("# ---- exact text below this line ----\n")
    text = rest.rsplit("\n# ---- end ----", 1)[0]
    seq = language.sample(language.FFL.from_p_ignore(0.5, 16), 1, 4)[0]
    rendered = render.render(seq, "chat")
    question = rendered.prompt(len(rendered.targets) - 1) + render.load_template("chat").ask
    ids = tok.apply_chat_template([{"role": "system", "content": "Be exact."}, {"role": "user", "content": question}],
                                  add_generation_prompt=True, return_dict=True)["input_ids"]
    assert text == tok.apply_chat_template([{"role": "system", "content": "Be exact."},
                                            {"role": "user", "content": question}], add_generation_prompt=True,
                                           tokenize=False)
    assert f"question (in the model's chat template): {len(ids):,} tokens" in head
