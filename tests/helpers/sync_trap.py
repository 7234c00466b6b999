"""A dispatch mode that fails on every aten call needing a host-device sync on CUDA,
so that the sync-free steps are checked on the CPU."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
FORBIDDEN = {
    aten._local_scalar_dense,  # .item(), bool(), int(), float() of a tensor
    aten.nonzero,
    aten.bincount,
    aten.masked_select,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
}
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


class SyncTrap(TorchDispatchMode):
    """Fails on every aten call that needs a host-device sync on CUDA."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in FORBIDDEN:
            raise AssertionError(f"host sync: {func}")
        if packet in INDEXING:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(i is not None and i.dtype == torch.bool for i in indices):
                raise AssertionError(f"boolean-mask indexing: {func}")
        if func is aten.repeat_interleave.Tensor or func is aten.repeat_interleave.self_Tensor:
            raise AssertionError(f"repeat_interleave with tensor repeats: {func}")
        return func(*args, **kwargs)
