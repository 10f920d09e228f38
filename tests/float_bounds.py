"""How far two floating-point computations of one value may disagree, from the arithmetic.

A tolerance in this suite is never a number tried until the test passed on one machine. It is
one of:

- a float32 (or bfloat16) bound derived from the operations the comparison covers: ``n``
  roundings in a chain move a value by at most ``gamma(n)`` of the magnitudes they act on, and a
  sum of ``n`` terms computed in any order is within ``gamma(n - 1) * sum |terms|`` of the exact
  sum (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., lemma 3.1 and eq. 3.5).
  SIMD kernels of another width, blocked matrix products and fused multiply-adds change the order
  and grouping of the roundings, never this bound, so it holds on every CPU (convolutions, which
  a library may compute by another algorithm such as Winograd's, are compared in float64);
- float64 on both sides, compared to ``FLOAT64_AGREEMENT`` of the largest magnitude;
- exact (``torch.equal``) where both sides run the same kernels on the same data (a resumed run,
  overlapped reading and writing, Ray workers, a patch that is removed again), or only correctly
  rounded element-wise operations (``+ - * /``, ``sqrt``, casts) on the same values.

Assertions that something *changed* (``not allclose(..., atol=1e-4)``) use effect sizes many
orders above any rounding; lossy codecs are compared with quality thresholds in 8-bit levels.
"""

from __future__ import annotations

import torch

UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
U32 = UNIT_ROUNDOFF[torch.float32]

# Two float64 evaluations of one formula (another summation order, another kernel, another but
# equivalent expression) agree to a few thousand roundings of 2**-53 even through a tiny UNet's
# nonlinear layers; 2**-30 is 2**23 roundings, and still 64 times below a single float32
# rounding, so a float32 step slipped into either side (a float32 constant, a .float()) fails it.
FLOAT64_AGREEMENT = 2.0**-30


def gamma(n: int, dtype: torch.dtype = torch.float32) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative effect of n roundings in a chain."""
    nu = n * UNIT_ROUNDOFF[dtype]
    assert nu < 1, f"{n} roundings of {dtype} bound nothing"
    return nu / (1 - nu)


def assert_float64_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Both float64 and within ``FLOAT64_AGREEMENT`` of ``expected``'s largest magnitude."""
    assert actual.dtype == expected.dtype == torch.float64, (actual.dtype, expected.dtype)
    atol = FLOAT64_AGREEMENT * float(expected.detach().abs().max())
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol)
