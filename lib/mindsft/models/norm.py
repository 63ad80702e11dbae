"""RMSNorm computed in float32 whatever the compute dtype (as HF and MindFormers)."""

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import One


class RMSNorm(nn.Cell):
    """x / sqrt(mean(x^2) + eps) * weight; statistics in float32, output in x's dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(
            ms.Tensor(shape=(dim,), dtype=ms.float32, init=One()), name="weight"
        )

    def construct(self, x):
        # x: (N, D) in the compute dtype
        dtype = x.dtype
        h = x if dtype == ms.float32 else x.astype(ms.float32)
        h = h * ops.rsqrt(ops.mean(ops.square(h), -1, keep_dims=True) + self.eps)
        if dtype != ms.float32:
            h = h.astype(dtype)
        return self.weight.astype(dtype) * h if dtype != ms.float32 else self.weight * h
