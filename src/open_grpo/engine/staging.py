"""Layout of the weight-staging buffer shared with an engine in its own process: where each tensor goes, and when a
chunk is full. Pure arithmetic (no torch), used by own_process.py and tested on its own.

Size. The buffer holds one chunk of `vllm_sync_chunk_mib` (default 1 GiB), or the largest tensor if that is bigger,
and never more than the whole model. Not the whole model by default: for 1.5B (3.1 GB of bf16 weights) that would
keep 3.1 GB on the trainer's GPU for a one-call sync, while four 1 GiB chunks cost three extra round trips of a
fraction of a millisecond each (a remote call of names and offsets, no tensor data) next to ~3 GB of copies; for 7B
(15 GB) a whole-model buffer would not be affordable at all. Weights are staged in the engine's dtype (bf16 for the
recipes), the cast done by the copy, as vLLM's loader would do it.

Offsets. Each tensor starts on a 256-byte boundary (CUDA's allocation granularity; vLLM's colocate RLHF example
aligns its IPC bucket the same way): every dtype view of the buffer is then aligned, whatever came before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN_BYTES = 256


def aligned(nbytes: int) -> int:
    """`nbytes` rounded up to the next multiple of ALIGN_BYTES."""
    return -(-nbytes // ALIGN_BYTES) * ALIGN_BYTES


def buffer_bytes(tensor_bytes: list[int], chunk_bytes: int) -> int:
    """The staging buffer's size for tensors of these sizes: one chunk, or the largest tensor if bigger, at most the
    whole model (all aligned)."""
    if not tensor_bytes:
        return ALIGN_BYTES
    total = sum(aligned(n) for n in tensor_bytes)
    return min(total, max(aligned(chunk_bytes), max(aligned(n) for n in tensor_bytes)))


@dataclass(frozen=True)
class Slot:
    """One tensor's place in the buffer."""

    name: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass
class ChunkPacker:
    """Places tensors one after the other in a buffer of `capacity` bytes; `place` returns None when the tensor does
    not fit behind the ones already placed (the chunk is full: load it, `clear`, place again)."""

    capacity: int
    slots: list[Slot] = field(default_factory=list)
    used: int = 0

    def place(self, name: str, shape: tuple[int, ...], nbytes: int) -> Slot | None:
        if aligned(nbytes) > self.capacity:
            raise ValueError(
                f"{name} needs {nbytes:,} bytes but the staging buffer holds {self.capacity:,}: raise vllm_sync_chunk_mib"
            )
        if self.used + nbytes > self.capacity:
            return None
        slot = Slot(name, tuple(shape), self.used, nbytes)
        self.slots.append(slot)
        self.used += aligned(nbytes)
        return slot

    def clear(self) -> list[Slot]:
        """The chunk's slots, and an empty buffer for the next chunk."""
        slots, self.slots, self.used = self.slots, [], 0
        return slots


def plan_chunks(tensors: list[tuple[str, tuple[int, ...], int]], capacity: int) -> list[list[Slot]]:
    """The chunks (lists of slots) that `tensors` (name, shape, nbytes), in order, make in a buffer of `capacity`."""
    packer, chunks = ChunkPacker(capacity), []
    for name, shape, nbytes in tensors:
        slot = packer.place(name, shape, nbytes)
        if slot is None:
            chunks.append(packer.clear())
            packer.place(name, shape, nbytes)
    if packer.slots:
        chunks.append(packer.clear())
    return chunks


def rpc_args(slots: list[Slot], dtype: str) -> tuple:
    """The load call's arguments: plain lists and strings, which vLLM's message encoding carries as they are."""
    return ([s.name for s in slots], [list(s.shape) for s in slots], [s.offset for s in slots], dtype)
