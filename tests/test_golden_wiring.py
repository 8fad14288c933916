"""The networks' wiring against stored numbers: a seeded tiny DiMSUM and DiT, every parameter drawn at random
(the adaLN-Zero init would zero the output and hide any wiring), one float64 forward, compared with
``golden_wiring.json`` beside this file.

The official fixtures catch the same mistakes (a swapped branch input, a wrong fusion query) but live outside
the repository and skip on a user's clone; these few KB run anywhere. After an intended change of the
network's function, regenerate with ``python tests/test_golden_wiring.py`` and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dimsum_core import create_model

GOLDEN = Path(__file__).with_name("golden_wiring.json")
MODELS = {
    "dimsum": dict(input_size=8, hidden_size=32, depth=2, attn_every=2, attn_heads=2, num_classes=3,
                   mixer={"name": "mamba", "backend": "torch", "d_state": 4}),
    "dit": dict(input_size=8, hidden_size=32, depth=2, num_heads=2, num_classes=3),
}


def forward(name: str) -> torch.Tensor:
    torch.manual_seed(0)
    model = create_model(name, **MODELS[name]).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        x = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64)
        return model(x, torch.tensor([0.3], dtype=torch.float64), torch.tensor([2]))


@pytest.mark.parametrize("name", MODELS)
def test_forward_matches_stored_numbers(name: str) -> None:
    want = torch.tensor(json.loads(GOLDEN.read_text())[name], dtype=torch.float64)
    got = forward(name)
    assert got.shape == want.shape
    assert got.abs().max() > 0.1  # the random weights reach the output
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8)  # stored to 10 significant digits


if __name__ == "__main__":
    rounded = {name: json.loads(json.dumps(forward(name).tolist()), parse_float=lambda v: float(f"{float(v):.10g}"))
               for name in MODELS}
    GOLDEN.write_text(json.dumps(rounded) + "\n")
    print(f"wrote {GOLDEN}")
