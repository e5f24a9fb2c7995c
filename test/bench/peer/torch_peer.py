#!/usr/bin/env python3
"""PyTorch peer for PRIMAL's benchmarks: the model, the fp/ste quantizers
and the optimizer of docs/design.md, written the ordinary PyTorch way, so a benchmark can print PRIMAL's
tokens/s and memory beside "the same model in PyTorch" measured in the same run.

Only python3 + torch. Prints exactly one JSON line on stdout (last line); everything else
goes to stderr. See README.md next to this file for how benchmarks call it.
"""
import argparse
import array
import contextlib
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (vocab, padded vocab for the embedding, d_model, layers, heads, ffn, seq) by name, from
# src/presets.json, the table PRIMAL itself reads (presets.py beside this file).
from presets import PRESETS


# ------------------------------------------------- quantizers (docs/design.md, "Quantizers")
def quant_weight_ternary(w):
    # BitNet b1.58: per-matrix absmean scale, round to {-1,0,+1}·gamma; the forward sees Wq,
    # the backward passes the gradient straight through to the latent fp32 W.
    gamma = w.abs().mean().clamp(min=1e-8)
    wq = gamma * torch.clamp(torch.round(w / gamma), -1, 1)
    return w + (wq - w).detach()


def quant_act_int8(x):
    # 8-bit absmax per token (over the feature dim), straight-through gradient.
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = torch.clamp(torch.round(x * s), -128, 127) / s
    return x + (xq - x).detach()


class BitLinear(nn.Module):
    """A bias-free linear layer whose weight (and optionally input) is quantized.
    quant='fp' with act_bits=None is exactly nn.Linear(bias=False)."""

    def __init__(self, d_in, d_out, quant, act_bits):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        self.quant, self.act_bits = quant, act_bits

    def forward(self, x):
        w = quant_weight_ternary(self.weight) if self.quant == "ste" else self.weight
        if self.act_bits == 8:
            x = quant_act_int8(x)
        return F.linear(x, w)


# ------------------------------------------------------------ model (docs/design.md, "Model")
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):
    # x: [B, T, H, Dh]. Rotate interleaved pairs (2i, 2i+1) by angle t·theta^(-2i/Dh).
    # cos/sin are cast to x's dtype so bf16 autocast does not promote q/k back to fp32.
    x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, d, heads, quant, act_bits, use_sdpa):
        super().__init__()
        self.h, self.dh, self.use_sdpa = heads, d // heads, use_sdpa
        self.q, self.k, self.v, self.o = (BitLinear(d, d, quant, act_bits) for _ in range(4))

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        q = rope(self.q(x).view(B, T, self.h, self.dh), cos, sin).transpose(1, 2)
        k = rope(self.k(x).view(B, T, self.h, self.dh), cos, sin).transpose(1, 2)
        v = self.v(x).view(B, T, self.h, self.dh).transpose(1, 2)
        if self.use_sdpa:
            # The fused kernel (flash / mem-efficient on CUDA) is what a PyTorch user gets today.
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # Plain math path (also the only one on torch < 2.0); softmax in fp32 for stability.
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.dh))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(mask, float("-inf")).float().softmax(-1).to(v.dtype)
            y = att @ v
        return self.o(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, d, ffn, quant, act_bits):
        super().__init__()
        self.gate = BitLinear(d, ffn, quant, act_bits)
        self.up = BitLinear(d, ffn, quant, act_bits)
        self.down = BitLinear(ffn, d, quant, act_bits)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, d, heads, ffn, quant, act_bits, use_sdpa):
        super().__init__()
        self.attn_norm = RMSNorm(d)
        self.attn = Attention(d, heads, quant, act_bits, use_sdpa)
        self.mlp_norm = RMSNorm(d)
        self.mlp = MLP(d, ffn, quant, act_bits)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class Model(nn.Module):
    def __init__(self, vocab, vocab_pad, d, layers, heads, ffn, seq, quant, act_bits, use_sdpa):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab_pad, d)
        self.blocks = nn.ModuleList(
            Block(d, heads, ffn, quant, act_bits, use_sdpa) for _ in range(layers))
        self.norm = RMSNorm(d)
        dh = d // heads
        inv_freq = 10000.0 ** (-torch.arange(0, dh, 2, dtype=torch.float32) / dh)
        ang = torch.arange(seq, dtype=torch.float32)[:, None] * inv_freq[None, :]  # [T, Dh/2]
        # [T, 1, Dh/2] broadcasts over heads in [B, T, H, Dh/2]; not saved in state_dict.
        self.register_buffer("cos", ang.cos()[:, None, :], persistent=False)
        self.register_buffer("sin", ang.sin()[:, None, :], persistent=False)
        for name, p in self.named_parameters():  # N(0, 0.02) for every matrix; norms stay 1
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, idx, targets=None):
        """Mean next-token loss; the logits themselves when targets is None (tests)."""
        T = idx.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.embed(idx)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        x = self.norm(x)
        logits = F.linear(x, self.embed.weight)[..., : self.vocab]  # tied head, drop padding
        if targets is None:
            return logits
        # Loss in fp32 even under bf16 autocast.
        return F.cross_entropy(logits.float().reshape(-1, self.vocab), targets.reshape(-1))


# ---------------------------------------------------------------- data
class Batches:
    """Random tokens, or random windows of T+1 from a file of little-endian int32 tokens.
    A fixed CPU torch.Generator makes both reproducible across devices."""

    def __init__(self, vocab, B, T, device, seed, path=None):
        self.vocab, self.B, self.T, self.device = vocab, B, T, device
        self.g = torch.Generator().manual_seed(seed)
        self.tokens = None
        if path:
            arr = array.array("i")
            with open(path, "rb") as f:
                arr.frombytes(f.read())
            if sys.byteorder != "little":
                arr.byteswap()  # the file format is little-endian whatever the host is
            toks = torch.frombuffer(arr, dtype=torch.int32)
            if toks.numel() < T + 2:
                raise ValueError(f"{path}: {toks.numel()} tokens, need more than T+1={T + 1}")
            if int(toks.min()) < 0 or int(toks.max()) >= vocab:
                raise ValueError(f"{path}: token ids outside [0, {vocab})")
            # Keep the corpus on the device so sampling does not add host->device copies.
            self.tokens = toks.long().to(device)

    def next(self):
        if self.tokens is None:
            w = torch.randint(self.vocab, (self.B, self.T + 1), generator=self.g)
            w = w.to(self.device, non_blocking=True)
        else:
            starts = torch.randint(self.tokens.numel() - self.T, (self.B,), generator=self.g)
            idx = starts[:, None] + torch.arange(self.T + 1)[None, :]
            w = self.tokens[idx.to(self.device)]
        return w[:, :-1], w[:, 1:]


# ---------------------------------------------------------------- harness
def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def make_optimizer(model, lr, device):
    # wd 0.1 on 2-D params (embedding/head + BitLinear latents), none on norm weights.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    if device == "cuda":
        # The fused CUDA AdamW is the fastest stock choice; a fair peer uses it where it exists.
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=True)
        except (TypeError, RuntimeError):
            pass
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=PRESETS, default="small")
    p.add_argument("--quant", choices=["fp", "ste"], default="ste")
    p.add_argument("--act-bits", choices=["8", "none"], default=None,
                   help="activation quantization (default: 8 for ste, none for fp)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 2 on cpu)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data", default=None, help="file of little-endian int32 tokens")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (cuda only)")
    p.add_argument("--sdpa", action=argparse.BooleanOptionalAction, default=True,
                   help="fused scaled_dot_product_attention (default on)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on cuda")
    p.add_argument("--log-every", type=int, default=0,
                   help="print loss to stderr every N steps (syncs; 0 = never)")
    return p.parse_args(argv)


def run(a, notes):
    vocab, vocab_pad, d, layers, heads, ffn, seq = PRESETS[a.preset]
    act_bits = {"8": 8, "none": None, None: 8 if a.quant == "ste" else None}[a.act_bits]
    if a.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    elif a.device == "cpu":
        torch.set_num_threads(2)  # the CPU benchmark's budget; match PRIMAL's thread count
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    use_sdpa = a.sdpa and hasattr(F, "scaled_dot_product_attention")
    if a.sdpa and not use_sdpa:
        notes.append(f"scaled_dot_product_attention missing in torch {torch.__version__}; math attention")
    bf16 = a.bf16 and a.device == "cuda"
    if a.bf16 and not bf16:
        notes.append("--bf16 ignored on cpu (autocast bf16 is cuda-only here)")

    torch.manual_seed(a.seed)
    model = Model(vocab, vocab_pad, d, layers, heads, ffn, seq, a.quant, act_bits, use_sdpa)
    model = model.to(a.device)
    params = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    opt = make_optimizer(model, a.lr, a.device)
    data = Batches(vocab, a.batch, seq, a.device, a.seed, a.data)

    fwd, compiled = model, False
    if a.compile:
        if hasattr(torch, "compile"):
            try:
                fwd, compiled = torch.compile(model), True
            except Exception as e:  # noqa: BLE001 — any failure means "report eager"
                notes.append(f"torch.compile failed ({type(e).__name__}: {e}); eager")
        else:
            notes.append(f"torch.compile unavailable in torch {torch.__version__}; eager")

    # Built only when asked: even a disabled cuda autocast probes the GPU on some versions.
    def autocast():
        if bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step():
        x, y = data.next()
        with autocast():
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    warmup = a.warmup
    if compiled and warmup < 1:
        warmup = 1  # compilation happens on the first call; never time it
        notes.append("--compile: ran 1 untimed step to compile")
    first_loss = None
    for i in range(warmup):
        try:
            loss = step()
        except Exception as e:  # noqa: BLE001
            if not (compiled and i == 0):
                raise
            # torch.compile compiles lazily, so a broken toolchain only shows up here; the
            # compiled wrapper shares the module's parameters, so eager just carries on.
            msg = str(e).splitlines()[0][:200] if str(e) else ""
            notes.append(f"torch.compile failed at first step ({type(e).__name__}: {msg}); eager")
            fwd, compiled = model, False
            opt.zero_grad(set_to_none=True)
            continue
        if first_loss is None:
            first_loss = loss
        if a.log_every and (i + 1) % a.log_every == 0:
            print(f"warmup {i + 1}: loss {loss.item():.4f}", file=sys.stderr)

    sync(a.device)
    t0 = time.perf_counter()
    loss = None
    for i in range(a.steps):
        loss = step()
        if first_loss is None:
            first_loss = loss
        if a.log_every and (i + 1) % a.log_every == 0:
            print(f"step {i + 1}: loss {loss.item():.4f}", file=sys.stderr)
    sync(a.device)  # everything queued must finish before the timer is read
    elapsed = time.perf_counter() - t0

    if a.device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        # ru_maxrss is KiB on Linux, bytes on macOS. It includes the interpreter and torch
        # itself (a few hundred MB), unlike the cuda figure.
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = rss if sys.platform == "darwin" else rss * 1024
    return {
        "peer": "pytorch", "torch": torch.__version__, "preset": a.preset, "quant": a.quant,
        "actBits": act_bits, "device": a.device, "threads": torch.get_num_threads(),
        "compile": compiled, "bf16": bf16, "sdpa": use_sdpa, "batch": a.batch, "seq": seq,
        "steps": a.steps, "warmup": warmup,
        "tokensPerSec": a.batch * seq * a.steps / elapsed if a.steps and elapsed > 0 else None,
        "stepMs": 1000.0 * elapsed / a.steps if a.steps else None,
        "peakMemoryBytes": int(peak), "params": params,
        "initialLoss": first_loss.item() if first_loss is not None else None,
        "finalLoss": loss.item() if loss is not None else None,
        "notes": notes,
    }


def main(argv=None):
    a = parse_args(argv)
    # Libraries (torch.compile, inductor) sometimes print to stdout; keep stdout for the one
    # JSON line the benchmark parses.
    out, sys.stdout = sys.stdout, sys.stderr
    notes = []
    try:
        result = run(a, notes)
        code = 0
    except Exception as e:  # noqa: BLE001 — report e.g. CUDA OOM as JSON, not a bare traceback
        import traceback
        traceback.print_exc()
        result = {"peer": "pytorch", "torch": torch.__version__, "preset": a.preset,
                  "quant": a.quant, "device": a.device, "batch": a.batch,
                  "error": f"{type(e).__name__}: {e}", "notes": notes}
        code = 1
    sys.stdout = out
    print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
