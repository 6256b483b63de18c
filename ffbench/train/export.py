"""Export a native Transformer to Hugging Face, with ffbench's character tokenizer, so ``hf/``,
``vllm/`` and lm-eval evaluate it unchanged.

- ``style="gpt2"`` with learned positions and GELU -> ``GPT2LMHeadModel``: the same pre-LayerNorm
  blocks, tanh-GELU and tied embeddings, so the export is a renaming plus a transpose (GPT-2
  stores linear layers as ``Conv1D``, (in, out)).
- ``style="llama"`` with RoPE and SwiGLU -> ``LlamaForCausalLM``: RMSNorm, no biases, rotate-half
  RoPE with base 10000 (HF's convention), the fused qkv and [up, gate] projections split apart.

Anything else (ALiBi, sinusoidal, GEGLU, a temperature) has no HF twin and is refused with the reason.
"""

from __future__ import annotations

from pathlib import Path

from ffbench.errors import FFBenchError


def export(checkpoint: str | Path, out: str | Path) -> Path:
    """Export to whichever HF architecture the checkpoint's style maps onto."""
    from ffbench.train.checkpoint import load_checkpoint

    _, cfg = load_checkpoint(checkpoint)
    return (export_llama if cfg.style == "llama" else export_gpt2)(checkpoint, out)


def _checked_tokenizer(checkpoint, cfg, target: str, requirements):
    """Refuse a checkpoint that ``target`` cannot represent (every unmet ``(ok, reason)`` named);
    return the character tokenizer, which must cover the model's vocabulary."""
    from ffbench.tokenizer import char_tokenizer

    reasons = [reason for ok, reason in requirements if not ok]
    if reasons:
        raise FFBenchError(f"cannot export {str(checkpoint)!r} to {target}: {'; '.join(reasons)}")
    tok = char_tokenizer()
    if len(tok) != cfg.vocab_size:
        raise FFBenchError(f"tokenizer has {len(tok)} tokens but the model {cfg.vocab_size}")
    return tok


def _load_and_save(hf, weights: dict, tok, out, derived) -> Path:
    """Load the renamed weights strictly (buffers HF computes itself, matched by ``derived``, aside)
    and write the model and tokenizer."""
    import torch

    missing, unexpected = hf.load_state_dict({k: v.contiguous() for k, v in weights.items()}, strict=False)
    missing = [k for k in missing if not derived(k)]
    if missing or unexpected:
        raise FFBenchError(f"export mismatch: missing {missing}, unexpected {unexpected}")
    out = Path(out)
    with torch.no_grad():
        hf.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def export_llama(checkpoint: str | Path, out: str | Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from ffbench.train.checkpoint import load_checkpoint

    net, cfg = load_checkpoint(checkpoint)
    tok = _checked_tokenizer(checkpoint, cfg, "LlamaForCausalLM", (
        (cfg.arch == "transformer", "only Transformers export"),
        (cfg.style == "llama", f"style {cfg.style!r} (needs --style llama: RMSNorm, no biases)"),
        (cfg.positions == "rope", f"positions {cfg.positions!r} (Llama uses RoPE)"),
        (cfg.activation == "swiglu", f"activation {cfg.activation!r} (Llama uses SwiGLU)"),
        (cfg.temperature == 1.0, f"attention temperature {cfg.temperature}")))
    d = cfg.d_model
    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=d, intermediate_size=4 * d,
                         num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                         num_key_value_heads=cfg.n_head, max_position_embeddings=cfg.max_len, rms_norm_eps=1e-5,
                         rope_theta=10000.0, attention_bias=False, mlp_bias=False, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    hf = LlamaForCausalLM(hf_cfg)
    src = net.state_dict()
    dst = {"model.embed_tokens.weight": src["wte.weight"], "model.norm.weight": src["ln_f.weight"],
           "lm_head.weight": src["wte.weight"]}
    for i in range(cfg.n_layer):
        a, b = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = src[a + "attn.c_attn.weight"].split(d, dim=0)
        up, gate = src[a + "mlp.c_fc.weight"].split(4 * d, dim=0)
        dst.update({b + "input_layernorm.weight": src[a + "ln_1.weight"],
                    b + "post_attention_layernorm.weight": src[a + "ln_2.weight"],
                    b + "self_attn.q_proj.weight": q, b + "self_attn.k_proj.weight": k,
                    b + "self_attn.v_proj.weight": v, b + "self_attn.o_proj.weight": src[a + "attn.c_proj.weight"],
                    b + "mlp.up_proj.weight": up, b + "mlp.gate_proj.weight": gate,
                    b + "mlp.down_proj.weight": src[a + "mlp.c_proj.weight"]})
    return _load_and_save(hf, dst, tok, out, derived=lambda k: "rotary_emb" in k)


def export_gpt2(checkpoint: str | Path, out: str | Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    from ffbench.train.checkpoint import load_checkpoint

    net, cfg = load_checkpoint(checkpoint)
    tok = _checked_tokenizer(checkpoint, cfg, "GPT2LMHeadModel", (
        (cfg.arch == "transformer", "only Transformers export"),
        (cfg.positions == "learned", f"positions {cfg.positions!r} (GPT-2 has learned positions)"),
        (cfg.style == "gpt2", f"style {cfg.style!r} (export it to LlamaForCausalLM instead)"),
        (cfg.activation == "gelu", f"activation {cfg.activation!r}"),
        (cfg.temperature == 1.0, f"attention temperature {cfg.temperature}")))
    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.max_len, n_embd=cfg.d_model, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, layer_norm_epsilon=1e-5, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    hf = GPT2LMHeadModel(hf_cfg)
    src = net.state_dict()
    dst = {"transformer.wte.weight": src["wte.weight"], "transformer.wpe.weight": src["wpe.weight"],
           "transformer.ln_f.weight": src["ln_f.weight"], "transformer.ln_f.bias": src["ln_f.bias"],
           "lm_head.weight": src["wte.weight"]}
    for i in range(cfg.n_layer):
        a, b = f"blocks.{i}.", f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            dst[b + f"{ln}.weight"], dst[b + f"{ln}.bias"] = src[a + f"{ln}.weight"], src[a + f"{ln}.bias"]
        for mod in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            dst[b + f"{mod}.weight"] = src[a + f"{mod}.weight"].t().contiguous()  # Conv1D is (in, out)
            dst[b + f"{mod}.bias"] = src[a + f"{mod}.bias"]
    return _load_and_save(hf, dst, tok, out, derived=lambda k: k.endswith((".attn.bias", "masked_bias")))
