"""DecoderMean computes the decoder's own mean, for every architecture and the layer kinds it rewrites."""

import pytest
import torch
from torch import nn

from dwp_hub import DWPrior
from dwp_hub.architectures import KernelDecoder
from dwp_hub.decoder_mean import DecoderMean


def _perturbed(decoder: nn.Module, seed: int) -> nn.Module:
    """Larger random biases: fresh inits have small ones, which could hide a mistake in the folded ELU shift."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if name.endswith("bias"):
                p.add_(0.5 * torch.randn(p.shape, generator=gen))
    return decoder


@pytest.mark.parametrize("kernel_size,architecture", [(7, None), (5, None), (3, None), (5, "dwp-dense-5x5")])
def test_matches_the_decoder_forward_across_chunk_sizes(kernel_size, architecture):
    prior = DWPrior.for_kernel_size(kernel_size, "test", architecture=architecture)
    decoder = _perturbed(prior.decoder, kernel_size)
    fast = DecoderMean(decoder)
    gen = torch.Generator().manual_seed(0)
    for n in (4096, 7, 1, 300):  # shrinking and growing chunks reuse the same buffers
        z = 2.0 * torch.randn(n, prior.z_dim, generator=gen)
        with torch.no_grad():
            expected = decoder(z)[0]
        torch.testing.assert_close(fast(z), expected, rtol=1e-5, atol=1e-5)


def test_elu_alphas_missing_biases_and_fallback_layers():
    decoder = _perturbed(KernelDecoder(nn.Sequential(
        nn.Conv2d(3, 16, 1, bias=False), nn.ELU(0.5),  # matrix product without bias, shifted ELU before one
        nn.ConvTranspose2d(16, 8, 3), nn.ELU(2.0),  # 1 -> 3 as a matrix product; ELU before a module: exact
        nn.ConvTranspose2d(8, 8, 3, bias=False), nn.ELU(),  # 3 -> 5 runs as the module itself
        nn.Conv2d(8, 4, 1),
    ), 4), seed=1)
    z = torch.randn(257, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = decoder(z)[0]
    assert expected.shape == (257, 5, 5)
    torch.testing.assert_close(DecoderMean(decoder)(z), expected, rtol=1e-5, atol=1e-5)


def test_writes_into_out_of_any_dtype_and_layout():
    prior = DWPrior.for_kernel_size(3, "test")
    fast = DecoderMean(prior.decoder)
    z = torch.randn(50, prior.z_dim, generator=torch.Generator().manual_seed(3))
    expected = fast(z)
    out = torch.full((50, 3, 3), float("nan"))
    assert fast(z, out=out) is out and torch.equal(out, expected)
    wide = torch.zeros(50, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(fast(z, out=wide), expected.double())
    strided = torch.zeros(3, 3, 50).permute(2, 0, 1)
    assert torch.equal(fast(z, out=strided), expected)
