"""Training and model configurations: the dataclasses, the paper's defaults, and their validation.

No torch here, so that a recipe, a sweep file or a flag value is checked (and refused with one
line naming the bad value) before anything heavy is imported or any directory is made. Recipes and
sweep files are YAML mappings with the fields of :class:`TrainConfig`, ``model`` holding those of
:class:`ModelConfig`; an unknown key gets a "did you mean", a wrong type or an out-of-range value
names the field and what it accepts.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ffbench.errors import UsageError
from ffbench.tokenizer import VOCAB  # ids as in ffbench.tokenizer.char_tokenizer()

STOI = {ch: i for i, ch in enumerate(VOCAB)}
ARCHS = ("transformer", "lstm", "ssm")
POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")
ACTIVATIONS = ("gelu", "geglu", "swiglu")
STYLES = ("gpt2", "llama")
MODES = ("clean", "generative")
SHARPEN_KINDS = ("none", "entropy", "l2", "linf")
SHARPEN_SCHEDULES = ("constant", "linear", "oscillate")


@dataclass
class ModelConfig:
    arch: str = "transformer"  # transformer | lstm | ssm
    n_layer: int = 6
    d_model: int = 512
    n_head: int = 8
    max_len: int = 1024
    positions: str = "learned"
    activation: str = "gelu"
    attn_dropout: float = 0.0
    mlp_dropout: float = 0.0
    embd_dropout: float = 0.0
    temperature: float = 1.0  # attention softmax temperature
    hidden: int = 128  # LSTM hidden size
    style: str = "gpt2"  # gpt2: LayerNorm and biases | llama: RMSNorm, no biases
    vocab_size: int = len(VOCAB)
    # Selective SSM (arch "ssm"; it also uses n_layer, d_model and embd_dropout):
    d_state: int = 16  # state size N per channel
    d_conv: int = 4  # width of the short causal depthwise convolution
    expand: int = 2  # inner width = expand x d_model
    dt_rank: int = 0  # rank of the step-size projection; 0 means ceil(d_model / 16)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    length: int = 512
    train_mix: list[float] = field(default_factory=lambda: [0.8])  # p_ignore of each FFL component
    steps: int = 10_000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 50
    mode: str = "clean"
    sharpen: str = "none"
    sharpen_coef: float = 0.0
    sharpen_schedule: str = "constant"
    sharpen_start: int = 0
    data_seed: int = 0
    init_seed: int = 0
    device: str = "auto"
    bf16: bool = True  # autocast on CUDA only
    compile: bool = False
    eval_every: int = 250
    eval_num: int = 200

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples as lists, as in JSON and YAML

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = ModelConfig(**d.get("model", {}))
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        if "train_mix" in d:
            d["train_mix"] = list(d["train_mix"])
        return cls(**d)


# Settings that choose where a run executes, not what it computes: a run may resume elsewhere.
PLACEMENT = ("device", "compile")

# The paper's configuration per architecture: the canonical 6 x 512 x 8 Transformer for 10,000
# steps and the 1 x 128 LSTM for 500 steps. The paper trains no SSM; ``ssm`` is a Mamba-style
# 2 x 64 model (state 16, conv 4, expand 2; 66,624 parameters, half the LSTM's) under the LSTM's
# protocol (FFL(0.8) at T = 512, batch 16, 500 steps, AdamW (0.9, 0.999), weight decay 0.1,
# 50 warm-up steps, linear decay) at lr 3e-3, as small Mamba models are trained.
PAPER_DEFAULTS = {
    "transformer": dict(model=dict(arch="transformer", n_layer=6, d_model=512, n_head=8), steps=10_000),
    "lstm": dict(model=dict(arch="lstm", n_layer=1, hidden=128), steps=500),
    "ssm": dict(model=dict(arch="ssm", n_layer=2, d_model=64, d_state=16, d_conv=4, expand=2), steps=500, lr=3e-3),
}


def paper_config(arch: str, **overrides) -> TrainConfig:
    """The paper's defaults for ``arch`` with ``overrides`` (``model`` merged key by key), validated."""
    if arch not in PAPER_DEFAULTS:
        raise UsageError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    base = json.loads(json.dumps(PAPER_DEFAULTS[arch]))
    base["model"].update(overrides.pop("model", {}))
    base.update(overrides)
    cfg = from_mapping(base, "training config")
    validate(cfg)
    return cfg


# ----------------------------------------------------------------------------- structure and types
def _did_you_mean(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(raw: dict, known, where: str) -> None:
    """Refuse the first key of ``raw`` not in ``known``, suggesting the closest known one."""
    for key in raw:
        if key not in known:
            hint = _did_you_mean(str(key), known) or f" (known keys: {', '.join(known)})"
            raise UsageError(f"{where}: unknown key {key!r}{hint}")


def _typed(value, kind: str, name: str, where: str):
    """``value`` as ``kind`` (int, float, str, bool, floats, pair), or a one-line refusal."""
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and is_num:
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind in ("floats", "pair") and isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        if kind == "floats" or len(value) == 2:
            return [float(v) for v in value]
    expected = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                "floats": "a non-empty list of numbers", "pair": "a list of two numbers"}[kind]
    raise UsageError(f"{where}: {name} must be {expected}, got {value!r}")


def _kind(dc_field) -> str:
    t = str(dc_field.type)
    return {"list[float]": "floats", "tuple[float, float]": "pair"}.get(t, t)


def from_mapping(raw, where: str) -> TrainConfig:
    """A :class:`TrainConfig` from a recipe-like mapping: keys and types checked, ranges not yet."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: expected a mapping of training settings, got {type(raw).__name__}")
    train_fields = {f.name: f for f in fields(TrainConfig)}
    model_fields = {f.name: f for f in fields(ModelConfig)}
    check_keys(raw, train_fields, where)
    out = {}
    for key, value in raw.items():
        if key == "model":
            if not isinstance(value, dict):
                raise UsageError(f"{where}: model must be a mapping of model settings, got {value!r}")
            check_keys(value, model_fields, f"{where}: model")
            out["model"] = {k: _typed(v, _kind(model_fields[k]), f"model.{k}", where) for k, v in value.items()}
        else:
            out[key] = _typed(value, _kind(train_fields[key]), key, where)
    return TrainConfig.from_dict(out)


def load_yaml(path: str | Path, what: str) -> dict:
    """A YAML mapping from ``path``; a missing file or malformed YAML is one line."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{what} {str(path)!r} is not valid YAML{at}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"{what} {str(path)!r} must be a YAML mapping of settings, got {type(raw).__name__}")
    return raw


# ----------------------------------------------------------------------------- ranges
def _choice(value, allowed, name: str) -> None:
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}, got {value!r}{_did_you_mean(str(value), allowed)}")


def _at_least(value, low, name: str) -> None:
    if value < low:
        raise UsageError(f"{name} must be at least {low}, got {value!r}")


def _fraction(value, name: str, closed_top: bool = False) -> None:
    if not (0.0 <= value <= 1.0 if closed_top else 0.0 <= value < 1.0):
        raise UsageError(f"{name} must lie in [0, 1{']' if closed_top else ')'}, got {value!r}")


def validate(cfg: TrainConfig) -> None:
    """Refuse (one line, :class:`UsageError`) any setting outside what training accepts."""
    m = cfg.model
    _choice(m.arch, ARCHS, "model.arch")
    for name in ("n_layer", "d_model", "n_head", "hidden", "d_state", "d_conv", "expand"):
        _at_least(getattr(m, name), 1, f"model.{name}")
    _at_least(m.dt_rank, 0, "model.dt_rank")
    _at_least(m.max_len, 4, "model.max_len")
    if m.vocab_size != len(VOCAB):
        raise UsageError(f"model.vocab_size must be {len(VOCAB)} (the flip-flop character vocabulary), got {m.vocab_size}")
    for name in ("attn_dropout", "mlp_dropout", "embd_dropout"):
        _fraction(getattr(m, name), f"model.{name}")
    if m.arch == "transformer":
        _choice(m.positions, POSITIONS, "model.positions")
        _choice(m.activation, ACTIVATIONS, "model.activation")
        _choice(m.style, STYLES, "model.style")
        if m.d_model % m.n_head:
            raise UsageError(f"model.d_model {m.d_model} is not divisible by model.n_head {m.n_head}")
        if m.temperature <= 0:
            raise UsageError(f"model.temperature must be positive, got {m.temperature!r}")
        if m.positions in ("learned", "sinusoidal") and cfg.length > m.max_len:
            raise UsageError(f"length {cfg.length} exceeds the model's max_len {m.max_len} "
                             f"({m.positions} positions have a table of max_len rows)")
    if cfg.length % 2 or cfg.length < 4:
        raise UsageError(f"length must be an even integer >= 4, got {cfg.length!r}")
    for p in cfg.train_mix:
        _fraction(p, "each train_mix probability", closed_top=True)
    for name in ("steps", "batch_size", "eval_every", "eval_num"):
        _at_least(getattr(cfg, name), 1, name)
    for name in ("warmup", "sharpen_start", "data_seed", "init_seed"):
        _at_least(getattr(cfg, name), 0, name)
    if cfg.lr <= 0:
        raise UsageError(f"lr must be positive, got {cfg.lr!r}")
    if cfg.weight_decay < 0:
        raise UsageError(f"weight_decay must be at least 0, got {cfg.weight_decay!r}")
    for b in cfg.betas:
        _fraction(b, "each of betas")
    _choice(cfg.mode, MODES, "mode")
    _choice(cfg.sharpen, SHARPEN_KINDS, "sharpen")
    _choice(cfg.sharpen_schedule, SHARPEN_SCHEDULES, "sharpen_schedule")
    if cfg.sharpen_coef < 0:
        raise UsageError(f"sharpen_coef must be at least 0, got {cfg.sharpen_coef!r}")
    if cfg.sharpen != "none" and m.arch != "transformer":
        raise UsageError("attention-sharpening losses (sharpen) need arch transformer")
    if not (cfg.device in ("auto", "cpu", "cuda", "mps") or cfg.device.startswith("cuda:")):
        raise UsageError(f"device must be auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")


def identity(cfg: TrainConfig) -> dict:
    """What a run computes: the config without where it runs, as plain JSON values."""
    d = cfg.as_dict()
    for key in PLACEMENT:
        d.pop(key)
    return d


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings where two config dicts differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}")
    return out



# ----------------------------------------------------------------------------- command-line overrides
# ``ffbench train --set KEY=VALUE`` (nanoGPT's configurator): every field of the dataclasses above is
# a key (``lr``, ``model.n_layer``), its type read from the field; nothing is declared twice.
KINDS = {"int": "INT", "float": "FLOAT", "str": "TEXT", "bool": "BOOL", "floats": "P1,P2,...", "pair": "A,B"}
CHOICES = {"model.arch": ARCHS, "model.positions": POSITIONS, "model.activation": ACTIVATIONS, "model.style": STYLES,
           "mode": MODES, "sharpen": SHARPEN_KINDS, "sharpen_schedule": SHARPEN_SCHEDULES}


def settable() -> dict[str, str]:
    """Every key ``--set`` takes (dotted under ``model.``), with its kind (see :func:`_typed`)."""
    keys = {f"model.{f.name}": _kind(f) for f in fields(ModelConfig)}
    keys.update({f.name: _kind(f) for f in fields(TrainConfig) if f.name != "model"})
    return keys


def defaults_help() -> str:
    """The keys with their defaults, for ``ffbench train --help``: the dataclass default, and where an
    architecture's paper configuration differs, that (e.g. ``model.n_layer=INT  6 (lstm 1, ssm 2)``)."""
    base = TrainConfig().as_dict()
    lines = []
    for key, kind in settable().items():
        path = key.split(".")
        default = base[path[0]] if len(path) == 1 else base["model"][path[1]]
        per_arch = []
        for arch, paper in PAPER_DEFAULTS.items() if key != "model.arch" else ():
            value = paper.get(path[0]) if len(path) == 1 else paper["model"].get(path[1])
            if value is not None and value != default:
                per_arch.append(f"{arch} {_shown(value)}")
        extra = f" ({', '.join(per_arch)})" if per_arch else ""
        shape = "|".join(CHOICES[key]) if key in CHOICES else KINDS[kind]
        lines.append(f"  {key}={shape}".ljust(40) + f" {_shown(default)}{extra}")
    return "\n".join(lines)


def _shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_set(text: str, flag: str = "--set") -> tuple[str, object]:
    """``"model.n_layer=2"`` -> ("model.n_layer", 2), the value typed by the field; an unknown key or
    a value of the wrong type is one line naming it (:class:`UsageError`)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    keys = settable()
    if not sep or not key:
        raise UsageError(f"{flag} {text!r}: expected KEY=VALUE, e.g. {flag} model.n_layer=2")
    if key not in keys:
        hint = _did_you_mean(key, keys) or " (see 'ffbench train --help' for the keys)"
        raise UsageError(f"{flag} {text}: unknown key {key!r}{hint}")
    return key, parse_value(key, keys[key], raw.strip(), f"{flag} {text}")


def parse_value(key: str, kind: str, raw: str, where: str):
    """A command-line string as the value of a field of ``kind`` (int, float, str, bool, floats, pair)."""
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return {"true": True, "1": True, "yes": True, "on": True,
                    "false": False, "0": False, "no": False, "off": False}[raw.lower()]
        if kind in ("floats", "pair"):
            values = [float(v) for v in raw.split(",")]
            if kind == "floats" or len(values) == 2:
                return values
            raise ValueError(raw)
        return raw
    except (ValueError, KeyError):
        expected = {"int": "an integer", "float": "a number", "bool": "true or false",
                    "floats": "comma-separated numbers", "pair": "two comma-separated numbers"}[kind]
        raise UsageError(f"{where}: {key} must be {expected}, got {raw!r}") from None


def layered(arch: str | None, recipe: str | None, pairs: list[tuple[str, object]]) -> TrainConfig:
    """The config ``ffbench train`` trains: the architecture's paper defaults, then the ``recipe``
    file, then the (key, value) ``pairs`` of the flags and ``--set``, later layers winning. A
    Transformer's position table grows to the training length unless one was set longer."""
    over = nest(pairs)
    model_over = over.pop("model", {})
    base = load_yaml(recipe, "recipe") if recipe else {}
    recipe_model = base.pop("model", {})
    if not isinstance(recipe_model, dict):
        raise UsageError(f"recipe {recipe!r}: model must be a mapping of model settings, got {recipe_model!r}")
    arch = model_over.pop("arch", None) or arch or recipe_model.get("arch")
    if arch is None:
        raise UsageError("give --arch transformer|lstm|ssm or a --recipe")
    if recipe:  # the recipe's own keys and types, before flags override them
        from_mapping({**base, "model": recipe_model}, f"recipe {recipe!r}")
    model = {**recipe_model, "arch": arch, **model_over}
    settings = {**base, **over}
    length_t = settings.get("length", 512)
    if arch == "transformer" and isinstance(length_t, int) and model.get("max_len", 1024) < length_t:
        model["max_len"] = length_t  # a position table as long as the training sequences
    return paper_config(arch, **settings, model=model)


def nest(pairs: list[tuple[str, object]]) -> dict:
    """Dotted overrides as a recipe-like mapping (``model`` a mapping of its own); later pairs win."""
    out: dict = {}
    for key, value in pairs:
        if key.startswith("model."):
            out.setdefault("model", {})[key[len("model."):]] = value
        else:
            out[key] = value
    return out
