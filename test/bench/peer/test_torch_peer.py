"""Self-check of the PyTorch peer (unittest, so it runs with plain python3 + torch):
    python3 test/bench/peer/test_torch_peer.py   (or: cd test/bench/peer && python3 -m unittest)
CPU-only and small: about a minute on 2 busy cores."""
import array
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_peer as tp  # noqa: E402

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_peer.py")
torch.set_num_threads(2)


def run_peer(*args):
    r = subprocess.run([sys.executable, PEER, *args], capture_output=True, text=True, timeout=300)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be one JSON line, got {r.stdout!r}\n{r.stderr}"
    return r.returncode, json.loads(lines[0])


class Pieces(unittest.TestCase):
    def test_rope_matches_pairwise_formula(self):
        T, H, Dh = 5, 2, 8
        m = tp.Model(16, 16, H * Dh, 1, H, 8, T, "fp", None, False)
        x = torch.randn(1, T, H, Dh)
        y = tp.rope(x, m.cos, m.sin)
        for t in range(T):
            for i in range(Dh // 2):
                a = t * 10000.0 ** (-2 * i / Dh)
                x0, x1 = x[0, t, :, 2 * i], x[0, t, :, 2 * i + 1]
                torch.testing.assert_close(y[0, t, :, 2 * i], x0 * math.cos(a) - x1 * math.sin(a))
                torch.testing.assert_close(y[0, t, :, 2 * i + 1], x0 * math.sin(a) + x1 * math.cos(a))

    def test_ternary_weights_and_straight_through(self):
        w = torch.randn(32, 16, requires_grad=True)
        wq = tp.quant_weight_ternary(w)
        gamma = w.detach().abs().mean()
        levels = torch.unique(torch.round(wq.detach() / gamma))
        self.assertTrue(set(levels.tolist()) <= {-1.0, 0.0, 1.0})
        wq.sum().backward()
        torch.testing.assert_close(w.grad, torch.ones_like(w))

    def test_int8_activations_per_token(self):
        x = torch.randn(3, 7, 16, requires_grad=True)
        xq = tp.quant_act_int8(x)
        s = 127.0 / x.detach().abs().amax(-1, keepdim=True)
        q = xq.detach() * s
        torch.testing.assert_close(q, torch.round(q), atol=1e-4, rtol=0)
        self.assertLessEqual(float((xq - x).detach().abs().max()), float((0.5 / s).max()) + 1e-6)
        xq.sum().backward()
        torch.testing.assert_close(x.grad, torch.ones_like(x))

    def test_causal(self):
        torch.manual_seed(0)
        m = tp.Model(64, 64, 32, 2, 4, 48, 16, "ste", 8, False)
        idx = torch.randint(64, (1, 16))
        idx2 = idx.clone()
        idx2[0, 10:] = (idx2[0, 10:] + 1) % 64
        a, b = m(idx), m(idx2)
        torch.testing.assert_close(a[:, :10], b[:, :10])
        self.assertFalse(torch.allclose(a[:, 10:], b[:, 10:]))

    @unittest.skipUnless(hasattr(torch.nn.functional, "scaled_dot_product_attention"),
                         "torch without scaled_dot_product_attention")
    def test_sdpa_matches_math_attention(self):
        torch.manual_seed(0)
        m1 = tp.Model(64, 64, 32, 2, 4, 48, 16, "fp", None, True)
        m2 = tp.Model(64, 64, 32, 2, 4, 48, 16, "fp", None, False)
        m2.load_state_dict(m1.state_dict())
        idx = torch.randint(64, (2, 16))
        torch.testing.assert_close(m1(idx), m2(idx), atol=1e-5, rtol=1e-5)

    def test_param_counts(self):
        # ghost-0.1b: ~124M params, 85M of them in BitLinear layers (docs/design.md, "Presets"); checked by
        # arithmetic so the test never allocates the 0.5 GB model.
        d, L, ffn = 768, 12, 2048
        bit = L * (4 * d * d + 3 * d * ffn)
        self.assertEqual(bit, 84_934_656)
        self.assertEqual(bit + 50304 * d + (2 * L + 1) * d, 123_587_328)
        m = tp.Model(*tp.PRESETS["small"], "fp", None, False)
        self.assertEqual(sum(p.numel() for p in m.parameters()),
                         4 * (4 * 256 * 256 + 3 * 256 * 704) + 256 * 256 + 9 * 256)


class EndToEnd(unittest.TestCase):
    def test_json_line(self):
        code, r = run_peer("--preset", "tiny", "--steps", "2", "--warmup", "1")
        self.assertEqual(code, 0, r)
        for k in ["peer", "torch", "preset", "quant", "device", "threads", "compile", "bf16",
                  "batch", "seq", "steps", "tokensPerSec", "stepMs", "peakMemoryBytes",
                  "params", "finalLoss"]:
            self.assertIn(k, r)
        self.assertEqual((r["peer"], r["quant"], r["seq"], r["threads"]), ("pytorch", "ste", 64, 2))
        self.assertGreater(r["tokensPerSec"], 0)
        self.assertGreater(r["peakMemoryBytes"], 0)
        self.assertAlmostEqual(r["finalLoss"], math.log(256), delta=0.3)  # random tokens

    def test_compile_works_or_reports_fallback(self):
        code, r = run_peer("--preset", "tiny", "--steps", "1", "--warmup", "0", "--compile")
        self.assertEqual(code, 0, r)
        if not r["compile"]:
            self.assertTrue(any("compile" in n for n in r["notes"]), r)

    def test_loss_falls_on_a_repeated_pattern(self):
        pattern = [(7 * i + 3) % 256 for i in range(37)] * 200
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "pattern.bin")
            with open(path, "wb") as f:
                f.write(array.array("i", pattern).tobytes())
            for quant in ("fp", "ste"):
                code, r = run_peer("--preset", "tiny", "--quant", quant, "--data", path,
                                   "--steps", "40", "--warmup", "0", "--batch", "8")
                self.assertEqual(code, 0, r)
                self.assertLess(r["finalLoss"], 0.5 * r["initialLoss"], r)

    def test_bad_data_reports_error_json(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.bin")
            with open(path, "wb") as f:
                f.write(array.array("i", [300] * 1000).tobytes())  # outside the byte vocab
            code, r = run_peer("--preset", "tiny", "--data", path, "--steps", "1")
        self.assertEqual(code, 1)
        self.assertIn("error", r)


if __name__ == "__main__":
    unittest.main()
