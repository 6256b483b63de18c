"""Renderings: pure functions from a compact flip-flop string to the text a model reads.

A rendering is a template file in ``prompts/`` (YAML), never code: each instruction with its data
value maps to a piece of text, and every read's piece holds an ``{answer}`` slot. ``render``
returns the text plus the character span of every read's answer and the answer strings (one per
data value), which is all a backend needs to score a read without knowing about flip-flops.

Template fields (see ``prompts/lightswitch.yaml`` for a commented example):
``write``, ``ignore``: a list indexed by data value, or a format string with ``{value}``;
``read``: a string holding ``{answer}`` once; ``answers``: list or ``{value}`` format string;
``separator`` between instructions; ``prefix`` / ``suffix`` around the whole text;
``demo_separator`` between a few-shot demonstration and the sequence; ``ask``: text a generation
backend appends to a prompt that ends just before an answer; ``answer_pattern``: a regex whose
first group extracts the answer from a generation; ``chat`` (true/false): the text is an
instruction for a chat model, so a local model's chat template wraps it (``--chat-template``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ffbench import language
from ffbench.errors import UsageError
from ffbench.resources import resource_dir

DEMO_LENGTH = 16
DEMO_SEED = 16_016
FILLER_STRIDE = 37  # coprime with any bank size below 37: consecutive ignores walk the whole bank


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    write: tuple[str, ...] | str
    ignore: tuple[str, ...] | str
    read: str
    answers: tuple[str, ...] | str
    separator: str = ""
    prefix: str = ""
    suffix: str = ""
    demo_separator: str = "\n"
    ask: str = ""
    answer_pattern: str = ""
    chat: bool = False  # an instruction for chat models: local models read it inside their chat template
    undo: tuple[str, ...] | str = ""  # the piece of an undo (``--task undo``); empty: the rendering has none
    # Register names (``--task registers``): the rendering reads three-character instructions ``wa1`` and
    # its pieces name the register with ``{register}``; empty: two-character instructions ``w1``.
    registers: tuple[str, ...] | str = ""
    # Filler sentences (``--task haystack``): an ignore at instruction t with value v renders as
    # filler[(t * FILLER_STRIDE + v) % len(filler)] instead of its ``ignore`` piece, a varied story.
    filler: tuple[str, ...] | str = ""

    @property
    def register_names(self) -> tuple[str, ...]:
        return tuple(self.registers) if isinstance(self.registers, tuple) else ()

    def max_alphabet(self) -> int:
        sizes = [len(f) for f in (self.write, self.ignore, self.answers, self.undo) if isinstance(f, tuple)]
        return min(sizes, default=language.MAX_ALPHABET)

    def choices(self, alphabet: int = 2) -> tuple[str, ...]:
        """The answer strings, indexed by data value."""
        return tuple(_piece(self.answers, v) for v in range(alphabet))

    def parse_answer(self, generation: str, alphabet: int = 2) -> int | None:
        """Data value named by a model's generation, or None when it names none (invalid)."""
        pattern = self.answer_pattern or "|".join(re.escape(c.strip()) for c in self.choices(alphabet))
        match = re.search(pattern, generation)
        if not match:
            return None
        found = (match.group(1) if match.groups() else match.group(0)).strip()
        stripped = [c.strip() for c in self.choices(alphabet)]
        if found in stripped:
            return stripped.index(found)
        folded = [c.casefold() for c in stripped]  # "Off" names the answer "off" when no other answer folds alike
        return folded.index(found.casefold()) if folded.count(found.casefold()) == 1 else None


@dataclass(frozen=True)
class Rendered:
    """Text of one sequence plus, per read, the answer's character span and target value."""

    text: str
    spans: np.ndarray  # (reads, 2) int64 [start, end) into text
    targets: np.ndarray  # (reads,) int64 data value of each read
    choices: tuple[str, ...]  # answer strings indexed by data value

    def prompt(self, read: int) -> str:
        """Text up to (not including) the answer of read ``read``: the per-read prompt."""
        return self.text[: self.spans[read, 0]]


# ----------------------------------------------------------------------------- templates
def available() -> list[str]:
    return sorted(p.stem for p in resource_dir("prompts").glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def load_template(name_or_path: str) -> Template:
    """A template by name (``prompts/NAME.yaml``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        path = resource_dir("prompts") / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UsageError(f"unknown rendering {name_or_path!r} (known: {', '.join(available())})")
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UsageError(f"rendering file {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return _template_from_dict(raw, path)


def _template_from_dict(raw, path: Path) -> Template:
    where = f"rendering file {str(path)!r}"
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must hold a mapping")
    fields = set(Template.__dataclass_fields__)
    unknown = set(raw) - fields
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = {"write", "ignore", "read", "answers"} - set(raw)
    if missing:
        raise UsageError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    values = {}
    for k, v in raw.items():
        if k == "chat":
            if not isinstance(v, bool):
                raise UsageError(f"{where}: field 'chat' must be true or false, got {v!r}")
            values[k] = v
            continue
        v = tuple(v) if isinstance(v, list) else v
        if not (isinstance(v, str) or (isinstance(v, tuple) and v and all(isinstance(x, str) for x in v))):
            raise UsageError(f"{where}: field {k!r} must be a string or a list of strings, got {v!r}")
        values[k] = v
    values.setdefault("name", path.stem)
    values.setdefault("description", "")
    if str(values["read"]).count("{answer}") != 1:
        raise UsageError(f"{where}: 'read' must contain '{{answer}}' exactly once")
    template = Template(**values)
    _check_placeholders(template, where)
    return template


def _check_placeholders(template: Template, where: str) -> None:
    """Every piece formats with the placeholders it may use, and the answers are distinct strings."""
    allowed = {"write": "{value}", "ignore": "{value}", "answers": "{value}", "undo": "{value}"}
    for name in ("write", "ignore", "answers", "undo"):
        field = getattr(template, name)
        for v in range(len(field) if isinstance(field, tuple) else 2):
            try:
                _piece(field, v)
            except (KeyError, IndexError, ValueError) as exc:
                raise UsageError(f"{where}: field {name!r} has an unknown or malformed placeholder ({exc}); "
                                 f"it may use only {allowed[name]}") from None
    if template.filler and not isinstance(template.filler, tuple):
        raise UsageError(f"{where}: field 'filler' must be a list of sentences")
    if template.registers and not isinstance(template.registers, tuple):
        raise UsageError(f"{where}: field 'registers' must be a list of register names")
    read = template.read.replace("{answer}", "", 1).replace("{register}", "" if template.registers else "{register}")
    stray = re.findall(r"\{[A-Za-z_][A-Za-z0-9_]*\}", read)
    if stray:
        raise UsageError(f"{where}: unknown placeholder {stray[0]} in 'read' (it holds only {{answer}})")
    sizes = [len(f) for f in (template.write, template.ignore, template.answers) if isinstance(f, tuple)]
    choices = template.choices(min(sizes, default=2))
    if len(set(choices)) < len(choices):
        raise UsageError(f"{where}: the answers must be different strings, got {list(choices)}")
    if template.answer_pattern:
        try:
            re.compile(template.answer_pattern)
        except re.error as exc:
            raise UsageError(f"{where}: answer_pattern is not a valid regular expression ({exc})") from None


def check_alphabet(template: Template, alphabet: int) -> None:
    """UsageError when the template cannot render data values 0..alphabet-1."""
    if alphabet > template.max_alphabet():
        raise UsageError(f"rendering {template.name!r} supports at most {template.max_alphabet()} data values, "
                         f"got --alphabet {alphabet}")


def _piece(field: tuple[str, ...] | str, value: int) -> str:
    if isinstance(field, tuple):
        return field[value]
    return field.replace("{register}", "\0").format(value=value).replace("\0", "{register}")


def _register_tables(template: Template, alphabet: int):
    """Pieces of a registers rendering, indexed ``(kind * K + register) * M + value`` (kind w, r, i)."""
    names = template.register_names
    head, tail = template.read.split("{answer}")
    pieces, answer_at = [], []
    for kind in ("w", "r", "i"):
        for name in names:
            for v in range(alphabet):
                if kind == "r":
                    h = head.replace("{register}", name)
                    pieces.append(h + _piece(template.answers, v) + tail.replace("{register}", name))
                    answer_at.append(len(h))
                else:
                    pieces.append(_piece(template.write if kind == "w" else template.ignore, v).replace("{register}", name))
                    answer_at.append(-1)
    return pieces, np.array([len(p) for p in pieces], dtype=np.int64), np.array(answer_at, dtype=np.int64)


# ----------------------------------------------------------------------------- rendering
@functools.lru_cache(maxsize=64)
def _tables(template: Template, alphabet: int):
    """Piece text and answer offset for every (instruction, value), indexed ``kind * M + value``."""
    check_alphabet(template, alphabet)
    if template.registers:
        return _register_tables(template, alphabet)
    head, tail = template.read.split("{answer}")
    pieces, answer_at = [], []
    for kind in ("w", "r", "i", "u"):
        if kind == "u" and not template.undo:
            break
        for v in range(alphabet):
            if kind == "r":
                pieces.append(head + _piece(template.answers, v) + tail)
                answer_at.append(len(head))
            else:
                pieces.append(_piece({"w": template.write, "i": template.ignore, "u": template.undo}[kind], v))
                answer_at.append(-1)
    for sentence in template.filler if isinstance(template.filler, tuple) else ():
        pieces.append(sentence)  # indexed after every instruction piece
        answer_at.append(-1)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    return pieces, lengths, np.array(answer_at, dtype=np.int64)


def every_piece(template: Template, alphabet: int = 2, demo: bool = True) -> str:
    """All the text the template can emit at this alphabet, each piece once: the characters any
    rendered sequence is made of (with ``demo``, also the separator after a demonstration)."""
    pieces, _, _ = _tables(template, alphabet)
    return "".join([template.prefix, template.separator, *pieces, template.demo_separator if demo else "",
                    template.suffix, template.ask])


_KIND = np.zeros(256, dtype=np.int64)
_KIND[language.W], _KIND[language.R], _KIND[language.I], _KIND[ord("u")] = 0, 1, 2, 3


def check_task(template: Template, task) -> None:
    """UsageError when the template cannot render every instruction of ``task`` (a :class:`ffbench.tasks.Task`)."""
    if template.registers and task.piece != "registers":
        raise UsageError(f"rendering {template.name!r} reads three-character register instructions: use it with "
                         f"--task registers, or use {task.default_render} for --task {task.name}")
    if task.piece and not getattr(template, task.piece):
        raise UsageError(f"rendering {template.name!r} has no {task.piece!r} piece, so it cannot render --task "
                         f"{task.name} (use {task.default_render}, or a template with an {task.piece!r} field)")


def _body(seq: np.ndarray, template: Template, alphabet: int, offset: int):
    """Render one sequence's instructions; spans are shifted by ``offset``."""
    pieces, lengths, answer_at = _tables(template, alphabet)
    if template.registers:
        return _register_body(seq, template, alphabet, offset, pieces, lengths, answer_at)
    if not template.undo and (seq[0::2] == ord("u")).any():
        raise UsageError(f"rendering {template.name!r} has no 'undo' piece, so it cannot render an undo sequence")
    ids = _KIND[seq[0::2]] * alphabet + (seq[1::2].astype(np.int64) - language.ZERO)
    if template.filler:
        bank = len(template.filler)
        slots = np.arange(ids.size, dtype=np.int64)
        filler_ids = len(pieces) - bank + (slots * FILLER_STRIDE + ids % alphabet) % bank
        ids = np.where(seq[0::2] == language.I, filler_ids, ids)
    sep = len(template.separator)
    starts = offset + np.concatenate(([0], np.cumsum(lengths[ids] + sep)[:-1]))
    is_read = seq[0::2] == language.R
    values = seq[1::2][is_read].astype(np.int64) - language.ZERO
    span_start = starts[is_read] + answer_at[ids[is_read]]
    answer_len = np.array([len(c) for c in template.choices(alphabet)], dtype=np.int64)
    spans = np.stack([span_start, span_start + answer_len[values]], axis=1)
    text = template.separator.join([pieces[k] for k in ids.tolist()])
    return text, spans, values


def _register_body(seq: np.ndarray, template: Template, alphabet: int, offset: int, pieces, lengths, answer_at):
    """:func:`_body` for three-character instructions (operation, register, value)."""
    if len(seq) % 3:
        raise UsageError(f"rendering {template.name!r} reads three-character instructions (--task registers), "
                         f"got a sequence of length {len(seq)}")
    k = len(template.register_names)
    op, reg = seq[0::3], seq[1::3].astype(np.int64) - ord("a")
    if (reg >= k).any():
        raise UsageError(f"rendering {template.name!r} names {k} registers, the sequence uses register "
                         f"{chr(int(reg.max()) + ord('a'))!r}")
    values = seq[2::3].astype(np.int64) - language.ZERO
    ids = (_KIND[op] * k + reg) * alphabet + values
    sep = len(template.separator)
    starts = offset + np.concatenate(([0], np.cumsum(lengths[ids] + sep)[:-1]))
    is_read = op == language.R
    span_start = starts[is_read] + answer_at[ids[is_read]]
    answer_len = np.array([len(c) for c in template.choices(alphabet)], dtype=np.int64)
    spans = np.stack([span_start, span_start + answer_len[values[is_read]]], axis=1)
    return template.separator.join([pieces[j] for j in ids.tolist()]), spans, values[is_read]


def demo_sequence(length: int = DEMO_LENGTH, alphabet: int = 2, seed: int = DEMO_SEED) -> np.ndarray:
    """The fixed few-shot demonstration: one FFL(length, 1/3 each) sequence with reads and writes."""
    dist = language.FFL(length, 1 / 3, 1 / 3, 1 / 3, alphabet)
    return language.sample(dist, 1, seed)[0]


def render(sequence: str | np.ndarray, template: Template | str, alphabet: int = 2,
           demo: str | np.ndarray | None = None) -> Rendered:
    """Render one legal sequence; ``demo`` (a sequence) is prepended as an unscored demonstration."""
    if isinstance(template, str):
        template = load_template(template)
    seq = language.to_array(sequence)[0] if isinstance(sequence, str) else sequence
    parts, offset = [template.prefix], len(template.prefix)
    if demo is not None:
        demo_arr = language.to_array(demo)[0] if isinstance(demo, str) else demo
        demo_text, _, _ = _body(demo_arr, template, alphabet, 0)
        parts += [demo_text, template.demo_separator]
        offset += len(demo_text) + len(template.demo_separator)
    text, spans, targets = _body(seq, template, alphabet, offset)
    parts += [text, template.suffix]
    return Rendered("".join(parts), spans, targets, template.choices(alphabet))
