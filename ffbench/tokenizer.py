"""A character-level tokenizer for flip-flop models: one token per character, exact offsets.

Used by our baselines (so ``hf/`` and ``vllm/`` can load an exported checkpoint unchanged) and by
the tests' tiny random models. Built with the ``tokenizers`` library and wrapped as a
``PreTrainedTokenizerFast``; decoding concatenates characters without spaces.
"""

from __future__ import annotations

SPECIALS = ("<pad>", "<s>", "</s>")
DEFAULT_CHARS = "wri0123456789 \n"


def char_tokenizer(chars: str = DEFAULT_CHARS, add_bos: bool = False):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: k for k, tok in enumerate(SPECIALS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<pad>", clean_up_tokenization_spaces=False)
