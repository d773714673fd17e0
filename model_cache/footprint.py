"""What a loaded model costs in memory, how to give memory back, and how to recognise running out of it.

torch is never imported here: it is looked up in sys.modules, so the cache works (and tests run) without it.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable, Iterator
from typing import Any

# A measure runs a loader and returns (loaded object, bytes it took or None when it cannot tell).
Measure = Callable[[Callable[[], Any]], tuple[Any, int | None]]

# How far module_bytes() looks through attributes for torch modules (wrapper.model.model is depth 2).
SEARCH_DEPTH = 3
# Containers larger than this (vocabularies, label tables) are not searched for modules.
SEARCH_CONTAINER_LIMIT = 32


def _torch() -> Any | None:
    """torch when it is imported, else None; None too while another thread is still importing it (a device worker's
    warm-up, as the first tasks after a restart load their models): its half-made module has no `nn` yet, and the
    loads measured meanwhile failed with AttributeError (issue 28, group-term case)."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return None
    return torch


def _is_module(obj: Any) -> bool:
    """A torch.nn.Module, or anything whose class offers parameters() (looked up on the type, not the instance)."""
    torch = _torch()
    if torch is not None and isinstance(obj, torch.nn.Module):
        return True
    return callable(getattr(type(obj), "parameters", None))


def _is_tensor(obj: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, (str, bytes, int, float, bool, type(None), type, type(sys))):
        return []
    if isinstance(obj, dict):
        return list(obj.values()) if len(obj) <= SEARCH_CONTAINER_LIMIT else []
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj) if len(obj) <= SEARCH_CONTAINER_LIMIT else []
    attributes = getattr(obj, "__dict__", None)
    return list(attributes.values()) if isinstance(attributes, dict) else []


def reachable_weights(obj: Any, depth: int = SEARCH_DEPTH) -> Iterator[Any]:
    """Torch modules and loose tensors (e.g. cached text embeddings) at obj or through its attributes."""
    seen: set[int] = set()
    frontier = [obj]
    for _ in range(depth + 1):
        following = []
        for item in frontier:
            if id(item) in seen:
                continue
            seen.add(id(item))
            if _is_module(item) or _is_tensor(item):
                yield item  # a module's own parameters() covers everything inside it
            else:
                following.extend(_children(item))
        frontier = following


def tensor_bytes(obj: Any) -> int | None:
    """Bytes of the parameters, buffers and loose tensors reachable from obj; None when there are none."""
    sizes: dict[int, int] = {}
    found = False
    for weights in reachable_weights(obj):
        found = True
        if _is_tensor(weights):
            tensors = [weights]
        else:
            buffers = getattr(weights, "buffers", None)
            tensors = list(weights.parameters()) + (list(buffers()) if callable(buffers) else [])
        for tensor in tensors:
            sizes[id(tensor)] = int(tensor.numel()) * int(tensor.element_size())
    return sum(sizes.values()) if found else None


def measure_cpu_load(load: Callable[[], Any]) -> tuple[Any, int | None]:
    """Load, then count the tensor bytes the loaded object holds (RSS is too noisy to charge a budget with)."""
    model = load()
    return model, tensor_bytes(model)


def measure_cuda_load(load: Callable[[], Any], device: str = "cuda") -> tuple[Any, int | None]:
    """Load, and charge what the CUDA allocator gained meanwhile; tensor bytes when it gained nothing."""
    import torch

    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    model = load()
    torch.cuda.synchronize(device)
    gained = torch.cuda.memory_allocated(device) - before
    return model, gained if gained > 0 else tensor_bytes(model)


def measure_for(device: str) -> Measure:
    """The measure that fits a device string ("cpu", "cuda", "cuda:1")."""
    if device.startswith("cuda"):
        return functools.partial(measure_cuda_load, device=device)
    return measure_cpu_load


def release_memory() -> None:
    """Collect unreachable objects (models hold reference cycles) and hand cached CUDA blocks back."""
    gc.collect()
    torch = _torch()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


OOM_TYPE_NAMES = {"OutOfMemoryError", "MemoryError"}
# How torch words allocation failures on CUDA and on the CPU.
OOM_PHRASES = ("out of memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch.cuda.OutOfMemoryError, or a RuntimeError saying so (also as the cause of exc)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 4:
        if isinstance(current, MemoryError) or type(current).__name__ in OOM_TYPE_NAMES:
            return True
        if isinstance(current, RuntimeError) and any(p in str(current).lower() for p in OOM_PHRASES):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False
