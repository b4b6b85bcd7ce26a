"""The Efficient-TopFormer search space (Table 1 of the study's slides), defined once.

Everything else in the project (supernet, size tools, latency operators, search) reads the space and the
architecture config from this module. A config is a frozen, JSON-serialisable dataclass; the space knows
its choices, validates configs against them, samples, enumerates coordinates, mutates and measures distance.

Rules fixed here (and tested):
- a CNN stage has one width and one depth; kernel size and expansion ratio are chosen per block, so the
  ``kernels`` / ``expansions`` lists have exactly ``depth`` entries (only active blocks are stored, which
  keeps the representation canonical: two configs that build the same network compare equal);
- a ViT stage's blocks share heads, key dim, attention ratio and MLP ratio;
- ratios are multiples of 0.1 and are computed in integer tenths, so float noise never changes a size:
  ``value_dim = floor(key_dim * attn_ratio)`` and ``mlp_hidden = floor(token_dim * mlp_ratio)``
  (TopFormer's ``int(ratio * dim)``, made exact).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from etf.common import EtfError, atomic_write

FUSE_CHOICES = ("depthwise", "full")


def tenths(ratio: float) -> int:
    """A ratio such as 1.8 as the exact integer 18 (ratios in the space are multiples of 0.1)."""
    return int(round(float(ratio) * 10))


def scaled_floor(dim: int, ratio: float) -> int:
    """``floor(dim * ratio)`` computed exactly in integer tenths (TopFormer's ``int(ratio * dim)``)."""
    return (dim * tenths(ratio)) // 10


def _ratio_range(lo: float, hi: float, step: float) -> tuple[float, ...]:
    a, b, s = tenths(lo), tenths(hi), tenths(step)
    return tuple(v / 10 for v in range(a, b + 1, s))


# ----------------------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageConfig:
    """One MBConv stage: a width and depth, and a kernel size and expansion ratio per active block."""

    width: int
    depth: int
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "expansions", tuple(int(e) for e in self.expansions))


@dataclass(frozen=True)
class VitConfig:
    """One ViT stage: ``depth`` transformer blocks sharing heads, key dim, attention and MLP ratios."""

    heads: int
    key_dim: int
    attn_ratio: float
    mlp_ratio: float
    depth: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "attn_ratio", tenths(self.attn_ratio) / 10)
        object.__setattr__(self, "mlp_ratio", tenths(self.mlp_ratio) / 10)

    @property
    def value_dim(self) -> int:
        """Per-head value dim: ``floor(attn_ratio * key_dim)`` (Table 1: Value dim = Attention ratio x Key dim)."""
        return scaled_floor(self.key_dim, self.attn_ratio)

    def mlp_hidden(self, token_dim: int) -> int:
        """Hidden width of the MLP for a given token dim: ``floor(mlp_ratio * token_dim)``."""
        return scaled_floor(token_dim, self.mlp_ratio)


@dataclass(frozen=True)
class ArchConfig:
    """A complete subnet of the supernet: stem, five MBConv stages, four ViT stages and the decoder."""

    stem_width: int
    stages: tuple[StageConfig, ...]
    vits: tuple[VitConfig, ...]
    decoder_width: int
    fuse: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "vits", tuple(self.vits))

    # -- derived sizes ----------------------------------------------------------------------------------
    @property
    def pyramid_widths(self) -> tuple[int, ...]:
        """Widths of the stage outputs that feed the token pyramid (stages 2-5)."""
        return tuple(self.stages[i].width for i in PYRAMID_STAGES)

    @property
    def token_dim(self) -> int:
        """Channel dim of the transformer tokens: the sum of the pyramid stages' widths."""
        return sum(self.pyramid_widths)

    # -- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (lists, ints, floats, strings) that :meth:`from_dict` reads back."""
        return {
            "stem_width": self.stem_width,
            "stages": [
                {"width": s.width, "depth": s.depth, "kernels": list(s.kernels), "expansions": list(s.expansions)}
                for s in self.stages
            ],
            "vits": [dataclasses.asdict(v) for v in self.vits],
            "decoder_width": self.decoder_width,
            "fuse": self.fuse,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The config as JSON text (keys in a fixed order)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "ArchConfig":
        """Build a config from a dict; structural problems raise :class:`EtfError` naming the field."""
        if not isinstance(data, dict):
            raise EtfError("architecture config must be a JSON object")
        try:
            stages = tuple(
                StageConfig(
                    width=_as_int(s, "width", f"stages[{i}]"),
                    depth=_as_int(s, "depth", f"stages[{i}]"),
                    kernels=tuple(_as_int_list(s, "kernels", f"stages[{i}]")),
                    expansions=tuple(_as_int_list(s, "expansions", f"stages[{i}]")),
                )
                for i, s in enumerate(_as_list(data, "stages", "config"))
            )
            vits = tuple(
                VitConfig(
                    heads=_as_int(v, "heads", f"vits[{i}]"),
                    key_dim=_as_int(v, "key_dim", f"vits[{i}]"),
                    attn_ratio=_as_float(v, "attn_ratio", f"vits[{i}]"),
                    mlp_ratio=_as_float(v, "mlp_ratio", f"vits[{i}]"),
                    depth=_as_int(v, "depth", f"vits[{i}]"),
                )
                for i, v in enumerate(_as_list(data, "vits", "config"))
            )
            fuse = data.get("fuse")
            if not isinstance(fuse, str):
                raise EtfError(f"config.fuse must be one of {', '.join(FUSE_CHOICES)}, got {fuse!r}")
            unknown = set(data) - {"stem_width", "stages", "vits", "decoder_width", "fuse", "name"}
            if unknown:
                raise EtfError(f"config has unknown field(s): {', '.join(sorted(unknown))}")
            return cls(
                stem_width=_as_int(data, "stem_width", "config"),
                stages=stages,
                vits=vits,
                decoder_width=_as_int(data, "decoder_width", "config"),
                fuse=fuse,
            )
        except (TypeError, AttributeError) as exc:  # e.g. a stage that is not an object
            raise EtfError(f"malformed architecture config: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "ArchConfig":
        """Parse JSON text into a config (validate it against a space with ``SearchSpace.validate``)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EtfError(f"architecture config is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        return cls.from_dict(data)

    def key(self) -> str:
        """A stable 16-hex-digit key of the config (same config, same key, on any machine)."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canon.encode()).hexdigest()[:16]


def _field(obj: Any, name: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise EtfError(f"{where} must be a JSON object")
    if name not in obj:
        raise EtfError(f"{where}.{name} is missing")
    return obj[name]


def _as_int(obj: Any, name: str, where: str) -> int:
    v = _field(obj, name, where)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise EtfError(f"{where}.{name} must be an integer, got {v!r}")
    return int(v)


def _as_float(obj: Any, name: str, where: str) -> float:
    v = _field(obj, name, where)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EtfError(f"{where}.{name} must be a number, got {v!r}")
    return float(v)


def _as_list(obj: Any, name: str, where: str) -> list:
    v = _field(obj, name, where)
    if not isinstance(v, list):
        raise EtfError(f"{where}.{name} must be a list, got {v!r}")
    return v


def _as_int_list(obj: Any, name: str, where: str) -> list[int]:
    v = _as_list(obj, name, where)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise EtfError(f"{where}.{name} must be a list of integers, got {v!r}")
    return v


# ----------------------------------------------------------------------------------------------------------
# The space
# ----------------------------------------------------------------------------------------------------------

#: Indices of the CNN stages whose outputs form the token pyramid (stages 2-5 of Table 1).
PYRAMID_STAGES = (1, 2, 3, 4)
#: Indices (into the pyramid) that get a Semantics Injection Module and feed the head (stages 3-5).
INJECTION_LEVELS = (1, 2, 3)


@dataclass(frozen=True)
class StageSpec:
    """The choices of one MBConv stage."""

    name: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expansions: tuple[int, ...]
    stride: int  # stride of the stage's first block


@dataclass(frozen=True)
class VitSpec:
    """The choices of one ViT stage."""

    heads: tuple[int, ...]
    key_dims: tuple[int, ...]
    attn_ratios: tuple[float, ...]
    mlp_ratios: tuple[float, ...]
    depths: tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    """All choices of the supernet; :data:`TABLE1` is the space of the Efficient-TopFormer study."""

    stem_widths: tuple[int, ...]
    stages: tuple[StageSpec, ...]
    vits: tuple[VitSpec, ...]
    decoder_widths: tuple[int, ...]
    fuses: tuple[str, ...] = FUSE_CHOICES
    stem_kernel: int = 3
    stem_stride: int = 2

    # -- coordinates --------------------------------------------------------------------------------------
    def coordinates(self, cfg: ArchConfig) -> list[str]:
        """The names of every coordinate of ``cfg`` in sweep order (per-block ones for active blocks only)."""
        out = ["stem_width"]
        for i, st in enumerate(cfg.stages):
            out += [f"stages.{i}.width", f"stages.{i}.depth"]
            out += [f"stages.{i}.kernels.{b}" for b in range(st.depth)]
            if len(self.stages[i].expansions) > 1:
                out += [f"stages.{i}.expansions.{b}" for b in range(st.depth)]
        for j in range(len(cfg.vits)):
            out += [f"vits.{j}.{f}" for f in ("heads", "key_dim", "attn_ratio", "mlp_ratio", "depth")]
        out += ["decoder_width", "fuse"]
        return out

    def choices(self, coord: str) -> tuple:
        """The allowed values of one coordinate (e.g. ``stages.2.width`` or ``vits.0.heads``)."""
        parts = coord.split(".")
        try:
            if parts[0] == "stem_width":
                return self.stem_widths
            if parts[0] == "decoder_width":
                return self.decoder_widths
            if parts[0] == "fuse":
                return self.fuses
            if parts[0] == "stages":
                spec = self.stages[int(parts[1])]
                return {"width": spec.widths, "depth": spec.depths, "kernels": spec.kernels,
                        "expansions": spec.expansions}[parts[2]]
            if parts[0] == "vits":
                spec = self.vits[int(parts[1])]
                return {"heads": spec.heads, "key_dim": spec.key_dims, "attn_ratio": spec.attn_ratios,
                        "mlp_ratio": spec.mlp_ratios, "depth": spec.depths}[parts[2]]
        except (IndexError, KeyError, ValueError):
            pass
        raise EtfError(f"unknown coordinate {coord!r}")

    def value(self, cfg: ArchConfig, coord: str) -> Any:
        """The value of one coordinate in ``cfg``."""
        parts = coord.split(".")
        if parts[0] in ("stem_width", "decoder_width", "fuse"):
            return getattr(cfg, parts[0])
        group = cfg.stages if parts[0] == "stages" else cfg.vits
        item = getattr(group[int(parts[1])], parts[2])
        return item[int(parts[3])] if len(parts) == 4 else item

    def with_value(self, cfg: ArchConfig, coord: str, value: Any) -> ArchConfig:
        """A copy of ``cfg`` with one coordinate changed; a new depth keeps the existing blocks' choices and
        gives added blocks the last active block's kernel and expansion."""
        if value not in self.choices(coord):
            raise EtfError(_not_allowed(coord, value, self.choices(coord)))
        parts = coord.split(".")
        if parts[0] in ("stem_width", "decoder_width", "fuse"):
            return dataclasses.replace(cfg, **{parts[0]: value})
        idx = int(parts[1])
        if parts[0] == "vits":
            vits = list(cfg.vits)
            vits[idx] = dataclasses.replace(vits[idx], **{parts[2]: value})
            return dataclasses.replace(cfg, vits=tuple(vits))
        stages = list(cfg.stages)
        st = stages[idx]
        if parts[2] == "depth":
            k = list(st.kernels[:value]) + [st.kernels[-1]] * max(0, value - st.depth)
            e = list(st.expansions[:value]) + [st.expansions[-1]] * max(0, value - st.depth)
            st = StageConfig(st.width, value, tuple(k), tuple(e))
        elif parts[2] in ("kernels", "expansions"):
            lst = list(getattr(st, parts[2]))
            lst[int(parts[3])] = value
            st = dataclasses.replace(st, **{parts[2]: tuple(lst)})
        else:
            st = dataclasses.replace(st, **{parts[2]: value})
        stages[idx] = st
        return dataclasses.replace(cfg, stages=tuple(stages))

    # -- validation ---------------------------------------------------------------------------------------
    def validate(self, cfg: ArchConfig) -> ArchConfig:
        """Return ``cfg`` if it lies in the space, else raise :class:`EtfError` naming field and allowed values."""
        _check("stem_width", cfg.stem_width, self.stem_widths)
        if len(cfg.stages) != len(self.stages):
            raise EtfError(f"config has {len(cfg.stages)} stages; the space has {len(self.stages)}")
        for i, (st, spec) in enumerate(zip(cfg.stages, self.stages)):
            _check(f"stages[{i}].width", st.width, spec.widths)
            _check(f"stages[{i}].depth", st.depth, spec.depths)
            for name, vals, allowed in (("kernels", st.kernels, spec.kernels),
                                        ("expansions", st.expansions, spec.expansions)):
                if len(vals) != st.depth:
                    raise EtfError(f"stages[{i}].{name} has {len(vals)} entries; it needs one per block "
                                   f"(depth {st.depth})")
                for b, v in enumerate(vals):
                    _check(f"stages[{i}].{name}[{b}]", v, allowed)
        if len(cfg.vits) != len(self.vits):
            raise EtfError(f"config has {len(cfg.vits)} ViT stages; the space has {len(self.vits)}")
        for j, (v, spec) in enumerate(zip(cfg.vits, self.vits)):
            _check(f"vits[{j}].heads", v.heads, spec.heads)
            _check(f"vits[{j}].key_dim", v.key_dim, spec.key_dims)
            _check(f"vits[{j}].attn_ratio", v.attn_ratio, spec.attn_ratios)
            _check(f"vits[{j}].mlp_ratio", v.mlp_ratio, spec.mlp_ratios)
            _check(f"vits[{j}].depth", v.depth, spec.depths)
        _check("decoder_width", cfg.decoder_width, self.decoder_widths)
        _check("fuse", cfg.fuse, self.fuses)
        return cfg

    # -- extremes and sampling ------------------------------------------------------------------------------
    def _build(self, pick) -> ArchConfig:
        stages = []
        for i, spec in enumerate(self.stages):
            depth = pick(f"stages.{i}.depth", spec.depths)
            stages.append(StageConfig(
                width=pick(f"stages.{i}.width", spec.widths),
                depth=depth,
                kernels=tuple(pick(f"stages.{i}.kernels.{b}", spec.kernels) for b in range(depth)),
                expansions=tuple(pick(f"stages.{i}.expansions.{b}", spec.expansions) for b in range(depth)),
            ))
        vits = tuple(
            VitConfig(
                heads=pick(f"vits.{j}.heads", spec.heads),
                key_dim=pick(f"vits.{j}.key_dim", spec.key_dims),
                attn_ratio=pick(f"vits.{j}.attn_ratio", spec.attn_ratios),
                mlp_ratio=pick(f"vits.{j}.mlp_ratio", spec.mlp_ratios),
                depth=pick(f"vits.{j}.depth", spec.depths),
            )
            for j, spec in enumerate(self.vits)
        )
        return ArchConfig(
            stem_width=pick("stem_width", self.stem_widths),
            stages=tuple(stages),
            vits=vits,
            decoder_width=pick("decoder_width", self.decoder_widths),
            fuse=pick("fuse", self.fuses),
        )

    def max_config(self) -> ArchConfig:
        """The largest subnet: every coordinate at its largest choice (fuse: full)."""
        return self._build(lambda name, vals: "full" if name == "fuse" else max(vals))

    def min_config(self) -> ArchConfig:
        """The smallest subnet: every coordinate at its smallest choice (fuse: depthwise)."""
        return self._build(lambda name, vals: "depthwise" if name == "fuse" else min(vals))

    def sample(self, rng: random.Random | int | None = None) -> ArchConfig:
        """Sample a config: each coordinate uniformly and independently (depth first, then each active
        block's choices), as Once-for-All samples. ``rng`` may be a seed: same seed, same config anywhere."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        return self._build(lambda name, vals: rng.choice(list(vals)))

    def mutate(self, cfg: ArchConfig, prob: float, rng: random.Random | int | None = None) -> ArchConfig:
        """Resample each coordinate of ``cfg`` with probability ``prob`` (depths first, then their blocks)."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        out = cfg
        for coord in self.coordinates(cfg):
            # depth may have changed the per-block coordinates: skip those that no longer exist
            if coord not in self.coordinates(out):
                continue
            if rng.random() < prob:
                out = self.with_value(out, coord, rng.choice(list(self.choices(coord))))
        return out

    def crossover(self, a: ArchConfig, b: ArchConfig, rng: random.Random | int | None = None) -> ArchConfig:
        """Uniform crossover: each stage (with its per-block choices) and each scalar coordinate comes from
        ``a`` or ``b`` with equal probability."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        return ArchConfig(
            stem_width=pick(a.stem_width, b.stem_width),
            stages=tuple(pick(x, y) for x, y in zip(a.stages, b.stages)),
            vits=tuple(pick(x, y) for x, y in zip(a.vits, b.vits)),
            decoder_width=pick(a.decoder_width, b.decoder_width),
            fuse=pick(a.fuse, b.fuse),
        )

    def distance(self, a: ArchConfig, b: ArchConfig) -> int:
        """Hamming distance over all coordinates, inactive blocks counted as 'absent' (0 iff a == b)."""
        fa, fb = self.features(a), self.features(b)
        return sum(x != y for x, y in zip(fa, fb))

    def features(self, cfg: ArchConfig) -> list[float]:
        """A fixed-length numeric vector of the config (inactive blocks as 0): for distances and regressors."""
        vec: list[float] = [cfg.stem_width]
        for st, spec in zip(cfg.stages, self.stages):
            vec += [st.width, st.depth]
            n = max(spec.depths)
            vec += list(st.kernels) + [0] * (n - st.depth)
            vec += list(st.expansions) + [0] * (n - st.depth)
        for v in cfg.vits:
            vec += [v.heads, v.key_dim, v.attn_ratio, v.mlp_ratio, v.depth]
        vec += [cfg.decoder_width, FUSE_CHOICES.index(cfg.fuse)]
        return vec

    def size(self) -> int:
        """The exact number of distinct configs in the space."""
        total = len(self.stem_widths) * len(self.decoder_widths) * len(self.fuses)
        for spec in self.stages:
            per_block = len(spec.kernels) * len(spec.expansions)
            total *= len(spec.widths) * sum(per_block ** d for d in spec.depths)
        for spec in self.vits:
            total *= (len(spec.heads) * len(spec.key_dims) * len(spec.attn_ratios) * len(spec.mlp_ratios)
                      * len(spec.depths))
        return total

    def iter_choices(self) -> Iterator[tuple[str, tuple]]:
        """(coordinate, choices) for every coordinate of the largest config: the space as a table."""
        for coord in self.coordinates(self.max_config()):
            yield coord, self.choices(coord)

    def describe(self) -> dict[str, Any]:
        """The space as a JSON-friendly dict (Table 1 plus the decoder choices)."""
        return {
            "stem_widths": list(self.stem_widths),
            "stages": [
                {"name": s.name, "widths": list(s.widths), "depths": list(s.depths), "kernels": list(s.kernels),
                 "expansions": list(s.expansions), "stride": s.stride}
                for s in self.stages
            ],
            "vits": [
                {"heads": list(v.heads), "key_dims": list(v.key_dims), "attn_ratios": list(v.attn_ratios),
                 "mlp_ratios": list(v.mlp_ratios), "depths": list(v.depths)}
                for v in self.vits
            ],
            "decoder_widths": list(self.decoder_widths),
            "fuses": list(self.fuses),
            "size": self.size(),
            "log10_size": round(math.log10(self.size()), 3),
        }


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _not_allowed(name: str, value: Any, allowed: Sequence) -> str:
    return f"{name}={_fmt(value)} is not in the search space; allowed: {', '.join(_fmt(a) for a in allowed)}"


def _check(name: str, value: Any, allowed: Sequence) -> None:
    if value not in allowed:
        raise EtfError(_not_allowed(name, value, allowed))


def _vit_spec() -> VitSpec:
    return VitSpec(
        heads=tuple(range(2, 13, 2)),
        key_dims=tuple(range(12, 21, 2)),
        attn_ratios=_ratio_range(1.6, 2.4, 0.2),
        mlp_ratios=_ratio_range(1.6, 2.4, 0.2),
        depths=(1, 2),
    )


#: Table 1 of the Efficient-TopFormer slides, plus the decoder width and fuse choices that let one supernet
#: hold the three published TopFormer models.
TABLE1 = SearchSpace(
    stem_widths=(16, 24),
    stages=(
        StageSpec("MBConv-1", (16, 24), (1, 2), (3, 5), (1,), stride=1),
        StageSpec("MBConv-2", tuple(range(16, 41, 8)), (1, 2, 3), (3, 5), (3, 4, 5), stride=2),
        StageSpec("MBConv-3", tuple(range(24, 73, 8)), (1, 2, 3), (3, 5), (2, 3, 4, 5), stride=2),
        StageSpec("MBConv-4", tuple(range(56, 137, 8)), (1, 2, 3), (3, 5), (2, 3, 4, 5), stride=2),
        StageSpec("MBConv-5", tuple(range(88, 177, 8)), (1, 2, 3, 4), (3, 5), (4, 5, 6, 7), stride=2),
    ),
    vits=tuple(_vit_spec() for _ in range(4)),
    decoder_widths=(128, 192, 256),
)


def load_config(ref: str | Path, space: SearchSpace = TABLE1) -> ArchConfig:
    """Resolve a preset name or a path to a JSON config file, validated against ``space``.

    This is the one entry point every CLI uses for ``--arch``.
    """
    from supernet.presets import PRESETS  # local import: presets are built from this module

    ref = str(ref)
    if ref in PRESETS:
        return PRESETS[ref]
    path = Path(ref).expanduser()
    if not path.exists():
        names = ", ".join(PRESETS)
        if path.suffix == ".json" or "/" in ref:
            raise EtfError(f"architecture file not found: {ref}")
        raise EtfError(f"unknown preset {ref!r}; presets: {names} (or give a path to a JSON config)")
    if path.is_dir():
        raise EtfError(f"{ref} is a directory, not an architecture JSON file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise EtfError(f"cannot read architecture file {ref}: {exc}") from None
    cfg = ArchConfig.from_json(text)
    return space.validate(cfg)


def save_config(cfg: ArchConfig, path: str | Path) -> None:
    """Write ``cfg`` as JSON atomically (a temporary file renamed into place)."""
    atomic_write(path, cfg.to_json() + "\n")


__all__ = [
    "ArchConfig", "StageConfig", "VitConfig", "SearchSpace", "StageSpec", "VitSpec", "TABLE1",
    "PYRAMID_STAGES", "INJECTION_LEVELS", "FUSE_CHOICES", "load_config", "save_config", "scaled_floor", "tenths",
]
