"""A character-level tokenizer for flip-flop models: one token per character, exact offsets.

Used by our baselines (so ``hf/`` and ``vllm/`` can load an exported checkpoint unchanged) and by
the tests' tiny random models. Built with the ``tokenizers`` library and wrapped as a
``PreTrainedTokenizerFast``; decoding concatenates characters without spaces.

:class:`CharTokenizer` is the same vocabulary without ``transformers``: what ``ffbench/`` models
read (their dry run and ``ffbench render --model`` count with it; ``pip install 'ffbench[native]'``
has no ``transformers``).
"""

from __future__ import annotations

SPECIALS = ("<pad>", "<s>", "</s>")
DEFAULT_CHARS = "wri0123456789 \n"
VOCAB = list(SPECIALS) + list(dict.fromkeys(DEFAULT_CHARS))  # token ids, here and in char_tokenizer()
# Characters a native checkpoint may add after VOCAB, in this order: a model with vocab_size
# len(VOCAB) + n reads the first n (19: ``u`` for --task undo; 27: also the register names a..h).
# The ids of VOCAB never move, so the flip-flop checkpoints (vocab_size 18) are unchanged.
EXTRA_CHARS = "uabcdefgh"
# The text vocabulary (vocab_size TEXT_VOCAB_SIZE = 99): all of the above, then every other printable
# ASCII character in code order, so a native model reads natural-language renderings (--task haystack,
# ffbench/haystack-lstm) one character per token while the ids of the flip-flop characters stay put.
TEXT_CHARS = "".join(ch for ch in map(chr, range(32, 127)) if ch not in VOCAB and ch not in EXTRA_CHARS)
TEXT_VOCAB_SIZE = len(VOCAB) + len(EXTRA_CHARS) + len(TEXT_CHARS)


def vocabulary(size: int = len(VOCAB)) -> list[str]:
    """The token of each id of a native model with ``size`` tokens: VOCAB, then EXTRA_CHARS' first
    ones; or, for ``TEXT_VOCAB_SIZE``, VOCAB, EXTRA_CHARS and TEXT_CHARS (every printable ASCII)."""
    if size == TEXT_VOCAB_SIZE:
        return VOCAB + list(EXTRA_CHARS) + list(TEXT_CHARS)
    if not len(VOCAB) <= size <= len(VOCAB) + len(EXTRA_CHARS):
        from ffbench.errors import FFBenchError

        raise FFBenchError(f"a native checkpoint has {len(VOCAB)} to {len(VOCAB) + len(EXTRA_CHARS)} tokens "
                           f"(the flip-flop characters, then {EXTRA_CHARS!r}) or {TEXT_VOCAB_SIZE} (the text "
                           f"vocabulary: every printable ASCII character and newline), got vocab_size {size}")
    return VOCAB + list(EXTRA_CHARS[: size - len(VOCAB)])


def is_text_vocabulary(size: int) -> bool:
    """True for a checkpoint that reads text (any rendering), not only the compact flip-flop strings."""
    return size == TEXT_VOCAB_SIZE


class CharTokenizer:
    """One id per character of :data:`VOCAB`, no BOS (a character outside it is ``<pad>``, the unknown
    token), with the part of the Hugging Face tokenizer interface that ffbench's counting uses:
    ``tok(texts, return_offsets_mapping=..., add_special_tokens=...)``, ``decode``, the special ids."""

    bos_token = bos_token_id = chat_template = None
    unk_token, unk_token_id = pad_token, pad_token_id = SPECIALS[0], 0

    def __init__(self, size: int = len(VOCAB)) -> None:
        self.vocab = vocabulary(size)
        self.ids = {ch: k for k, ch in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    def __call__(self, texts, return_offsets_mapping: bool = False, add_special_tokens: bool = True) -> dict:
        many = not isinstance(texts, str)
        batch = list(texts) if many else [texts]
        out = {"input_ids": [[self.ids.get(ch, self.unk_token_id) for ch in t] for t in batch]}
        if return_offsets_mapping:
            out["offset_mapping"] = [[(k, k + 1) for k in range(len(t))] for t in batch]
        return out if many else {key: value[0] for key, value in out.items()}

    def decode(self, ids) -> str:
        return "".join(self.vocab[i] for i in ids if self.vocab[i] not in SPECIALS)


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
