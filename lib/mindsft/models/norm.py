"""RMSNorm computed in float32 whatever the compute dtype (as HF and MindFormers)."""

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import One


class RMSNorm(nn.Cell):
    """x / sqrt(mean(x^2) + eps) * weight; statistics in float32, output in `dtype`.

    The dtype is fixed at construction (not read from x) so PyNative never waits
    on a tensor's metadata."""

    def __init__(self, dim: int, eps: float, dtype=ms.float32):
        super().__init__()
        self.eps = eps
        self.dtype = dtype
        self.weight = Parameter(
            ms.Tensor(shape=(dim,), dtype=ms.float32, init=One()), name="weight"
        )

    def construct(self, x):
        # x: (N, D) in the compute dtype
        if self.dtype == ms.float32:
            return self.weight * (
                x * ops.rsqrt(ops.mean(ops.square(x), -1, keep_dims=True) + self.eps)
            )
        h = x.astype(ms.float32)
        h = h * ops.rsqrt(ops.mean(ops.square(h), -1, keep_dims=True) + self.eps)
        return self.weight.astype(self.dtype) * h.astype(self.dtype)
