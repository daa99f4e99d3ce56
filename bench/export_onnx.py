#!/usr/bin/python3
"""Bench setup with Debian's python3-torch (libtorch 1.13, the addon's own).

  export_onnx.py export --arch ViT-B/32 --seed 7 --out bench/.work/vit-b-32
      Builds an OpenAI-layout CLIP image tower with random weights from the seed (plus a one-layer text tower,
      which loadClip needs but the image benchmark never runs), writes <out>.safetensors with OpenAI's tensor
      names (the addon loads it with loadClip) and <out>.onnx of the image tower (input "pixels" [N,3,S,S],
      output "embeds" [N,D]) for onnxruntime: the same graph and the same weights on both sides.
Prints one JSON line.
"""
import argparse
import json
import math
import struct
import sys
import time

import torch
from torch import nn

ARCHS = {
    "ViT-B/32": dict(width=768, layers=12, heads=12, patch=32, image=224, embed=512),
    "ViT-B/16": dict(width=768, layers=12, heads=12, patch=16, image=224, embed=512),
}


class Block(nn.Module):
    """OpenAI's ResidualAttentionBlock, attention written out as the addon computes it (no fused kernel)."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads, self.d = heads, width // heads
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.Module()
        self.attn.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.attn.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.attn.out_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(width, 4 * width)
        self.mlp.c_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        n, t, w = x.shape
        d = self.d  # a Python int, so the exported graph holds the scale as a constant
        qkv = nn.functional.linear(self.ln_1(x), self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.view(n, t, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        a = torch.softmax(torch.matmul(q * (1.0 / math.sqrt(d)), k.transpose(-2, -1)), -1)
        x = x + self.attn.out_proj(torch.matmul(a, v).transpose(1, 2).reshape(n, t, w))
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))  # QuickGELU


class Visual(nn.Module):
    def __init__(self, width, layers, heads, patch, image, embed):
        super().__init__()
        grid = image // patch
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, embed))

    def forward(self, pixels):
        x = self.conv1(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.view(1, 1, -1).expand(x.shape[0], 1, x.shape[2])
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding)
        for block in self.transformer.resblocks:
            x = block(x)
        return torch.matmul(self.ln_post(x[:, 0, :]), self.proj)


def init_openai_style(visual, width, layers):
    """CLIP's initialize_parameters scales, plus small random biases and LayerNorm affines so they count."""
    g = torch.Generator().manual_seed(0)
    s = width ** -0.5
    with torch.no_grad():
        for name, p in visual.named_parameters():
            if name in ("class_embedding", "positional_embedding", "proj"):
                std = s
            elif name.endswith("in_proj_weight"):
                std = s
            elif name.endswith("out_proj.weight") or name.endswith("c_proj.weight"):
                std = s * (2 * layers) ** -0.5
            elif name.endswith("c_fc.weight"):
                std = (2 * width) ** -0.5
            elif name == "conv1.weight":
                std = (3 * p.shape[2] * p.shape[3]) ** -0.5
            elif name.endswith(".weight"):  # LayerNorm gains
                p.copy_(1 + 0.05 * torch.randn(p.shape, generator=g))
                continue
            else:  # biases
                std = 0.02
            p.copy_(std * torch.randn(p.shape, generator=g))


def text_tower(width=64, context=77, vocab=1000, embed=512):
    """The smallest text tower loadClip accepts: one block at width 64. Never run by the image benchmark."""
    g = torch.Generator().manual_seed(1)
    t = {
        "token_embedding.weight": 0.02 * torch.randn(vocab, width, generator=g),
        "positional_embedding": 0.01 * torch.randn(context, width, generator=g),
        "ln_final.weight": torch.ones(width),
        "ln_final.bias": torch.zeros(width),
        "text_projection": width ** -0.5 * torch.randn(width, embed, generator=g),
        "logit_scale": torch.tensor(math.log(1 / 0.07)),
    }
    block = Block(width, max(1, width // 64))
    for name, p in block.named_parameters():
        t[f"transformer.resblocks.0.{name}"] = 0.02 * torch.randn(p.shape, generator=g) if p.dim() > 1 else p.detach().clone()
    return t


def write_safetensors(path, tensors):
    """safetensors: u64 header length, JSON header (dtype, shape, byte offsets), then the raw little-endian data."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def export(args):
    a = ARCHS[args.arch]
    torch.manual_seed(args.seed)
    visual = Visual(a["width"], a["layers"], a["heads"], a["patch"], a["image"], a["embed"]).eval()
    init_openai_style(visual, a["width"], a["layers"])
    tensors = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    tensors.update(text_tower(embed=a["embed"]))
    write_safetensors(args.out + ".safetensors", tensors)
    probe = torch.zeros(2, 3, a["image"], a["image"])
    with torch.no_grad():
        torch.onnx.export(visual, probe, args.out + ".onnx", input_names=["pixels"], output_names=["embeds"],
                          dynamic_axes={"pixels": {0: "n"}, "embeds": {0: "n"}}, opset_version=17,
                          do_constant_folding=True)
    return {"arch": args.arch, "seed": args.seed, "torch": torch.__version__,
            "parameters": sum(p.numel() for p in visual.parameters())}


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--arch", choices=list(ARCHS), required=True)
    e.add_argument("--seed", type=int, default=7)
    e.add_argument("--out", required=True)
    args = p.parse_args()
    print(json.dumps(export(args)))


if __name__ == "__main__":
    sys.exit(main())
