"""Export a native Transformer to Hugging Face ``GPT2LMHeadModel`` + ffbench's character tokenizer.

Our Transformer is GPT-2 with the same pre-LayerNorm blocks, tanh-GELU and tied embeddings, so
the export is a renaming plus a transpose (GPT-2 stores linear layers as ``Conv1D``, (in, out)).
Only learned positions, GELU, temperature 1 and no RoPE/ALiBi map onto GPT-2; other variants are
refused with the reason.
"""

from __future__ import annotations

from pathlib import Path

from ffbench.errors import FFBenchError


def export_gpt2(checkpoint: str | Path, out: str | Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from ffbench.tokenizer import char_tokenizer
    from ffbench.train.trainer import load_checkpoint

    net, cfg = load_checkpoint(checkpoint)
    reasons = []
    if cfg.arch != "transformer":
        reasons.append("only Transformers export")
    if cfg.positions != "learned":
        reasons.append(f"positions {cfg.positions!r} (GPT-2 has learned positions)")
    if cfg.activation != "gelu":
        reasons.append(f"activation {cfg.activation!r}")
    if cfg.temperature != 1.0:
        reasons.append(f"attention temperature {cfg.temperature}")
    if reasons:
        raise FFBenchError(f"cannot export {str(checkpoint)!r} to GPT2LMHeadModel: {'; '.join(reasons)}")
    tok = char_tokenizer()
    if len(tok) != cfg.vocab_size:
        raise FFBenchError(f"tokenizer has {len(tok)} tokens but the model {cfg.vocab_size}")
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
    missing, unexpected = hf.load_state_dict(dst, strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias") and not k.endswith("masked_bias")]
    if missing or unexpected:
        raise FFBenchError(f"export mismatch: missing {missing}, unexpected {unexpected}")
    out = Path(out)
    with torch.no_grad():
        hf.save_pretrained(out)
    tok.save_pretrained(out)
    return out
