"""The weight-sharing TopFormer supernet over the search space (Once-for-All style API).

    net = TopFormerSupernet(num_classes=150)
    net.set_active_subnet(cfg)          # any ArchConfig of the space (or set_max_net / set_min_net /
                                        # sample_active_subnet(rng)); get_active_net_config() reads it
    net.set_running_statistics(batches) # BN recalibration of the active subnet
    logits = net(images)                # (N, classes, H/8, W/8), computed by the active subnet
    static = net.get_active_subnet()    # a plain supernet.topformer.TopFormer with copied weights

Sharing rules: every layer stores its largest shape; widths, expansions, MLP hidden and decoder width take
the first channels; kernels take the centre; attention takes the first ``key_dim`` (``value_dim``) channels
of each of the first ``heads`` heads; the transformer's token channels are the first ``width`` channels of
each pyramid stage's segment; depth takes the first blocks of a stage.
"""
from __future__ import annotations

import random
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from supernet.elastic import ElasticConv, ElasticConvBN, ElasticDepthwiseConv, Sel, per_head_index, segment_index
from supernet.space import (INJECTION_LEVELS, PYRAMID_STAGES, ArchConfig, SearchSpace, TABLE1, VitConfig,
                            scaled_floor)
from supernet import topformer as T


class ElasticMBConv(nn.Module):
    """Inverted residual with elastic input/output width, kernel and expansion."""

    def __init__(self, cin_max: int, cout_max: int, kernel_max: int, expansion_max: int, stride: int):
        super().__init__()
        hidden_max = int(round(cin_max * expansion_max))
        self.stride = stride
        self.expand = ElasticConvBN(cin_max, hidden_max) if expansion_max != 1 else None
        self.dw = ElasticConvBN(hidden_max, hidden_max, kernel_max, stride, depthwise=True)
        self.project = ElasticConvBN(hidden_max, cout_max)

    def forward(self, x: torch.Tensor, cout: int, kernel: int, expansion: int) -> torch.Tensor:
        cin = x.shape[1]
        hidden = int(round(cin * expansion))
        h = F.relu(self.expand(x, hidden)) if expansion != 1 else x
        h = F.relu(self.dw(h, hidden, kernel=kernel))
        y = self.project(h, cout)
        return x + y if self.stride == 1 and cin == cout else y

    def extract(self, cin: int, cout: int, kernel: int, expansion: int) -> T.InvertedResidual:
        block = T.InvertedResidual(cin, cout, kernel, self.stride, expansion)
        hidden = int(round(cin * expansion))
        layers = [m for m in block.conv if isinstance(m, T.ConvBN)]
        if expansion != 1:
            self.expand.copy_to(layers[0].c, layers[0].bn, hidden, cin)
            layers = layers[1:]
        self.dw.copy_to(layers[0].c, layers[0].bn, hidden, None, kernel)
        self.project.copy_to(layers[1].c, layers[1].bn, cout, hidden)
        return block


class ElasticTransformerBlock(nn.Module):
    """TopFormer transformer block with elastic token dim, heads, key dim, value dim and MLP hidden width."""

    def __init__(self, dim_max: int, heads_max: int, key_dim_max: int, value_dim_max: int, hidden_max: int):
        super().__init__()
        self.key_dim_max, self.value_dim_max = key_dim_max, value_dim_max
        self.to_q = ElasticConvBN(dim_max, heads_max * key_dim_max)
        self.to_k = ElasticConvBN(dim_max, heads_max * key_dim_max)
        self.to_v = ElasticConvBN(dim_max, heads_max * value_dim_max)
        self.proj = ElasticConvBN(heads_max * value_dim_max, dim_max, bn_weight_init=0.0)
        self.fc1 = ElasticConvBN(dim_max, hidden_max)
        self.dwconv = ElasticDepthwiseConv(hidden_max)
        self.fc2 = ElasticConvBN(hidden_max, dim_max)

    def _selections(self, v: VitConfig) -> tuple[torch.Tensor, torch.Tensor]:
        return (per_head_index(v.heads, v.key_dim, self.key_dim_max),
                per_head_index(v.heads, v.value_dim, self.value_dim_max))

    def forward(self, x: torch.Tensor, tokens: Sel, v: VitConfig) -> torch.Tensor:
        b, dim, h, w = x.shape
        n = h * w
        qk, vs = self._selections(v)
        q = self.to_q(x, qk, tokens).reshape(b, v.heads, v.key_dim, n).transpose(2, 3)
        k = self.to_k(x, qk, tokens).reshape(b, v.heads, v.key_dim, n)
        val = self.to_v(x, vs, tokens).reshape(b, v.heads, v.value_dim, n).transpose(2, 3)
        attn = torch.matmul(q, k).softmax(dim=-1)
        out = torch.matmul(attn, val).transpose(2, 3).reshape(b, v.heads * v.value_dim, h, w)
        x = x + self.proj(F.relu6(out), tokens, vs)
        hidden = v.mlp_hidden(dim)
        y = self.fc2(F.relu6(self.dwconv(self.fc1(x, hidden, tokens))), tokens, hidden)
        return x + y

    def extract(self, tokens: Sel, dim: int, v: VitConfig) -> T.TransformerBlock:
        blk = T.TransformerBlock(dim, v.key_dim, v.heads, v.value_dim, v.mlp_hidden(dim))
        qk, vs = self._selections(v)
        a = blk.attn
        self.to_q.copy_to(a.to_q.c, a.to_q.bn, qk, tokens)
        self.to_k.copy_to(a.to_k.c, a.to_k.bn, qk, tokens)
        self.to_v.copy_to(a.to_v.c, a.to_v.bn, vs, tokens)
        self.proj.copy_to(a.proj[1].c, a.proj[1].bn, tokens, vs)
        hidden = v.mlp_hidden(dim)
        self.fc1.copy_to(blk.mlp.fc1.c, blk.mlp.fc1.bn, hidden, tokens)
        self.dwconv.copy_to(blk.mlp.dwconv)
        self.fc2.copy_to(blk.mlp.fc2.c, blk.mlp.fc2.bn, tokens, hidden)
        return blk


class ElasticInjection(nn.Module):
    """Semantics Injection Module with elastic local/global input width and output (decoder) width."""

    def __init__(self, cin_max: int, cout_max: int):
        super().__init__()
        self.local_embedding = ElasticConvBN(cin_max, cout_max)
        self.global_embedding = ElasticConvBN(cin_max, cout_max)
        self.global_act = ElasticConvBN(cin_max, cout_max)

    def forward(self, x_local: torch.Tensor, x_global: torch.Tensor, cout: int) -> torch.Tensor:
        size = x_local.shape[2:]
        local = self.local_embedding(x_local, cout)
        gate = F.relu6(self.global_act(x_global, cout) + 3.0) / 6.0
        gate = F.interpolate(gate, size=size, mode="bilinear", align_corners=False)
        glob = F.interpolate(self.global_embedding(x_global, cout), size=size, mode="bilinear", align_corners=False)
        return local * gate + glob

    def extract(self, cin: int, cout: int) -> T.Injection:
        inj = T.Injection(cin, cout)
        for name in ("local_embedding", "global_embedding", "global_act"):
            dst = getattr(inj, name)
            getattr(self, name).copy_to(dst.c, dst.bn, cout, cin)
        return inj


class TopFormerSupernet(nn.Module):
    """Weight-sharing TopFormer holding every subnet of ``space`` (default: Table 1 + decoder choices)."""

    def __init__(self, num_classes: int = 150, space: SearchSpace = TABLE1, dropout: float = 0.1):
        super().__init__()
        self.space, self.num_classes = space, num_classes
        big = space.max_config()
        self.stem = ElasticConvBN(3, max(space.stem_widths), space.stem_kernel, space.stem_stride)
        self.stages = nn.ModuleList()
        cin_max = max(space.stem_widths)
        for spec in space.stages:
            cout_max = max(spec.widths)
            blocks = nn.ModuleList()
            for b in range(max(spec.depths)):
                blocks.append(ElasticMBConv(cin_max, cout_max, max(spec.kernels), max(spec.expansions),
                                            spec.stride if b == 0 else 1))
                cin_max = cout_max
            self.stages.append(blocks)
        self.pyramid_max = big.pyramid_widths
        dim_max = sum(self.pyramid_max)
        self.vit_stages = nn.ModuleList()
        for vs in space.vits:
            kd, ar, mr = max(vs.key_dims), max(vs.attn_ratios), max(vs.mlp_ratios)
            self.vit_stages.append(nn.ModuleList(
                ElasticTransformerBlock(dim_max, max(vs.heads), kd, scaled_floor(kd, ar), scaled_floor(dim_max, mr))
                for _ in range(max(vs.depths))
            ))
        dec_max = max(space.decoder_widths)
        self.injections = nn.ModuleList(ElasticInjection(self.pyramid_max[i], dec_max) for i in INJECTION_LEVELS)
        self.fuse_full = ElasticConvBN(dec_max, dec_max)
        self.fuse_depthwise = ElasticConvBN(dec_max, dec_max, depthwise=True)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = ElasticConv(dec_max, num_classes)
        self.active: ArchConfig = big

    # -- choosing the active subnet ------------------------------------------------------------------------
    def set_active_subnet(self, cfg: ArchConfig) -> ArchConfig:
        """Make ``cfg`` (validated against the space) the subnet that ``forward`` computes."""
        self.active = self.space.validate(cfg)
        return self.active

    def set_max_net(self) -> ArchConfig:
        """Make the largest subnet of the space active."""
        return self.set_active_subnet(self.space.max_config())

    def set_min_net(self) -> ArchConfig:
        """Make the smallest subnet of the space active."""
        return self.set_active_subnet(self.space.min_config())

    def sample_active_subnet(self, rng: random.Random | int | None = None) -> ArchConfig:
        """Sample a config uniformly per coordinate and make it active."""
        return self.set_active_subnet(self.space.sample(rng))

    def get_active_net_config(self) -> ArchConfig:
        """The active subnet's config (the one ``forward`` computes)."""
        return self.active

    def set_running_statistics(self, batches: Iterable[torch.Tensor], device: torch.device | str | None = None) -> int:
        """Re-estimate the active subnet's BN running statistics from ``batches`` of images (BN recalibration,
        :func:`supernet.recalibration.recalibrate_bn`); returns the number of batches used."""
        from supernet.recalibration import recalibrate_bn  # lazy: that module takes the supernet as an argument

        return recalibrate_bn(self, batches, device=device)

    # -- forward ------------------------------------------------------------------------------------------
    def token_selection(self, cfg: ArchConfig) -> torch.Tensor:
        """Indices of the active token channels in the supernet's largest token layout."""
        return segment_index(cfg.pyramid_widths, self.pyramid_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.active
        x = F.relu(self.stem(x, cfg.stem_width))
        pyramid = []
        for i, (blocks, st) in enumerate(zip(self.stages, cfg.stages)):
            for b in range(st.depth):
                x = blocks[b](x, st.width, st.kernels[b], st.expansions[b])
            if i in PYRAMID_STAGES:
                pyramid.append(x)
        tokens = T.pool_tokens(pyramid)
        sel = self.token_selection(cfg)
        for blocks, v in zip(self.vit_stages, cfg.vits):
            for b in range(v.depth):
                tokens = blocks[b](tokens, sel, v)
        glob = tokens.split(list(cfg.pyramid_widths), dim=1)
        d = cfg.decoder_width
        feats = [inj(pyramid[i], glob[i], d) for inj, i in zip(self.injections, INJECTION_LEVELS)]
        y = feats[0]
        for f in feats[1:]:
            y = y + F.interpolate(f, size=y.shape[2:], mode="bilinear", align_corners=False)
        fuse = self.fuse_depthwise if cfg.fuse == "depthwise" else self.fuse_full
        y = F.relu(fuse(y, d))
        return self.classifier(self.dropout(y))

    # -- extraction ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def get_active_subnet(self, cfg: ArchConfig | None = None) -> T.TopFormer:
        """A standalone static :class:`~supernet.topformer.TopFormer` with copies of ``cfg``'s weights
        (default: the active config), in the supernet's train/eval mode."""
        cfg = self.space.validate(cfg or self.active)
        net = T.TopFormer(cfg, self.num_classes, self.space)
        self.stem.copy_to(net.stem[0].c, net.stem[0].bn, cfg.stem_width, 3)
        cin = cfg.stem_width
        for i, (st, blocks) in enumerate(zip(cfg.stages, self.stages)):
            for b in range(st.depth):
                net.stages[i][b] = blocks[b].extract(cin, st.width, st.kernels[b], st.expansions[b])
                cin = st.width
        sel, dim = self.token_selection(cfg), cfg.token_dim
        j = 0
        for blocks, v in zip(self.vit_stages, cfg.vits):
            for b in range(v.depth):
                net.transformer[j] = blocks[b].extract(sel, dim, v)
                j += 1
        for k, level in enumerate(INJECTION_LEVELS):
            net.injections[k] = self.injections[k].extract(cfg.pyramid_widths[level], cfg.decoder_width)
        fuse = self.fuse_depthwise if cfg.fuse == "depthwise" else self.fuse_full
        fuse.copy_to(net.head.fuse.c, net.head.fuse.bn, cfg.decoder_width,
                     None if cfg.fuse == "depthwise" else cfg.decoder_width)
        self.classifier.copy_to(net.head.classifier)
        net.head.dropout.p = self.dropout.p
        return net.train(self.training)
