"""Gaussian noise regenerated from (seed, tensor name).

Each tensor gets its own stream, derived by hashing the member seed together with the
tensor's name, so tensors of equal shape in different layers get independent noise.
The published RandOpt/ES/CoRP code re-seeds one generator with the same seed for every
tensor instead; ``mode="shared"`` reproduces that for comparison only.

``mode="chunked"`` splits every tensor into blocks of ``CHUNK`` elements, each with its own
stream seeded by (seed, tensor, block). One CPU ``torch.randn`` is a serial Mersenne-Twister
loop, so a whole-model draw cannot use more than one core; independent blocks can be drawn
by several threads at once. The blocks, not the threads, define the noise: the result is
the same for any thread count. On other devices a tensor is one stream, as in
"independent" mode: their generators are parallel already, and their streams differ from
the CPU's in every mode.

``mode="table"`` draws no noise per member at all (the shared noise table of Salimans et al.
2017, "Evolution Strategies as a Scalable Alternative to Reinforcement Learning"). One table
of ``TABLE_SIZE`` standard normals serves every member: block ``b`` of eps(seed)[name] is the
window of ``CHUNK`` values that starts at an offset hashed from (seed, tensor, block), so a
member costs a read and an add at memory speed instead of a Gaussian draw. The table is itself
defined in chunked blocks of a fixed seed, so it is the same on every machine and thread count
(and on GPUs: it is drawn on the CPU and copied); each of its blocks is drawn the first time a
window touches it, so a small model never pays for the whole table. Windows at different
offsets are shifted copies of one i.i.d. sequence: uncorrelated, not independent where they
overlap.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

NOISE_MODES = ("independent", "shared", "chunked", "table")
CHUNK = 1 << 16  # elements per block in "chunked" and "table" modes; changing it changes what a seed means
TABLE_SIZE = 1 << 27  # values in the "table" mode's table (512 MiB); changing it changes what a seed means
TABLE_SEED = 0
_tables: dict[torch.device, torch.Tensor] = {}
_table_lock = threading.Lock()

Target = tuple[torch.Tensor, float, "torch.Tensor | None"]  # (out, alpha, start) of NoiseSource.add_noise


def tensor_seed(seed: int, name: str, mode: str = "independent") -> int:
    """The generator seed of tensor ``name`` for member ``seed`` (63-bit)."""
    if mode == "shared":
        return int(seed) & 0x7FFF_FFFF_FFFF_FFFF
    digest = hashlib.blake2b(f"{int(seed)}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def draw_block(gen: torch.Generator, seed: int, name: str, block: int, out: torch.Tensor) -> None:
    """Block ``block`` of eps(seed)[name] in "chunked" mode: its own stream, seeded by all three."""
    gen.manual_seed(tensor_seed(seed, f"{name}#{block}"))
    torch.randn(out.shape, generator=gen, out=out)


def table_offset(seed: int, name: str, block: int) -> int:
    """Where block ``block`` of eps(seed)[name] starts in the table ("table" mode)."""
    return tensor_seed(seed, f"{name}#{block}") % (TABLE_SIZE - CHUNK + 1)


class NoiseTable:
    """The "table" mode's values on the CPU, each block drawn on first use (memory is committed
    page by page as blocks are drawn, so the whole table exists only where a model needs it)."""

    def __init__(self) -> None:
        self.values = torch.empty(TABLE_SIZE)
        self.drawn = np.zeros(TABLE_SIZE // CHUNK, dtype=bool)
        self._lock = threading.Lock()

    def ensure(self, starts: list[int], length: int, source: NoiseSource) -> np.ndarray:
        """Draw every block the windows ``[start, start + length)`` touch; the values as NumPy."""
        with self._lock:
            need = {b for s in starts for b in range(s // CHUNK, (s + length - 1) // CHUNK + 1)}
            missing = sorted(b for b in need if not self.drawn[b])
            if missing:

                def fill(share: list[int]) -> None:
                    gen = source._worker_state()[2]
                    for i in share:
                        b = missing[i]
                        draw_block(gen, TABLE_SEED, "corp/noise-table", b, self.values[b * CHUNK : (b + 1) * CHUNK])

                source._in_parallel(fill, len(missing))
                self.drawn[missing] = True
        return self.values.numpy()

    def whole(self, source: NoiseSource) -> torch.Tensor:
        self.ensure(list(range(0, TABLE_SIZE, CHUNK)), CHUNK, source)
        return self.values


_cpu_table: NoiseTable | None = None


def cpu_table() -> NoiseTable:
    global _cpu_table
    with _table_lock:
        if _cpu_table is None:
            _cpu_table = NoiseTable()
        return _cpu_table


def noise_table(device: torch.device | str = "cpu") -> torch.Tensor:
    """The whole "table" mode table on ``device`` (drawn completely; GPUs get a copy of the CPU's)."""
    device = torch.device(device)
    table = cpu_table().whole(NoiseSource("chunked"))
    if device.type == "cpu":
        return table
    with _table_lock:
        if device not in _tables:
            _tables[device] = table.to(device)
        return _tables[device]


class NoiseSource:
    """Regenerates eps(seed) one tensor at a time and counts what it generates.

    ``tensor_draws`` counts (seed, tensor) generations; ``draws`` converts that to
    whole-model noise vectors (generations divided by the number of tensors seen in a
    full pass), which is the unit the published recipes are costed in.
    """

    def __init__(self, mode: str = "independent", num_tensors: int = 1) -> None:
        if mode not in NOISE_MODES:
            raise ValueError(f"perturbation.noise_mode={mode!r}; allowed: {', '.join(NOISE_MODES)}")
        self.mode = mode
        self.num_tensors = max(1, num_tensors)
        self.tensor_draws = 0
        self.elements = 0
        self._generators: dict[torch.device, torch.Generator] = {}
        self._local = threading.local()  # each worker thread's generator and block buffers ("chunked")
        self._pool: ThreadPoolExecutor | None = None
        self._pool_threads = 0

    @property
    def draws(self) -> float:
        return self.tensor_draws / self.num_tensors

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
        return self._generators[device]

    def noise(
        self,
        seed: int,
        name: str,
        shape: torch.Size,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """eps(seed)[name]: standard normal, identical on every call and machine of one device type."""
        self.tensor_draws += 1
        self.elements += int(torch.Size(shape).numel())
        if self.mode == "table":
            if out is None:
                out = torch.empty(shape, device=device, dtype=dtype)
            flat = out.view(-1)
            starts = [table_offset(seed, name, b) for b in range(-(-flat.numel() // CHUNK))]
            if flat.device.type == "cpu":
                table = torch.from_numpy(cpu_table().ensure(starts, CHUNK, self))
            else:
                table = noise_table(flat.device)
            for b, start in enumerate(starts):
                lo, hi = b * CHUNK, min((b + 1) * CHUNK, flat.numel())
                flat[lo:hi] = table[start : start + hi - lo]
            return out
        if self.mode == "chunked" and torch.device(device).type == "cpu":
            if out is None:
                out = torch.empty(shape, device=device, dtype=dtype)
            self._chunked(seed, name, out)
            return out
        gen = self._generator(torch.device(device))
        gen.manual_seed(tensor_seed(seed, name, self.mode))
        if out is not None:
            return torch.randn(shape, generator=gen, out=out)
        return torch.randn(shape, generator=gen, device=device, dtype=dtype)

    def add_noise(self, seed: int, name: str, targets: list[Target], scratch: torch.Tensor) -> None:
        """``out = start + alpha * eps(seed)[name]`` for every ``(out, alpha, start)`` of ``targets``.

        All tensors are flat fp32 views of the tensor's ``n`` elements; ``start=None`` means
        ``out`` itself. One draw serves every target. ``scratch`` (n elements, the targets'
        device) holds the noise where it is drawn whole; in "chunked" mode on CPU each block
        is drawn and added by one worker thread, so no whole-tensor pass waits on another.
        """
        n = targets[0][0].numel()
        if self.mode not in ("chunked", "table") or scratch.device.type != "cpu":
            eps = self.noise(seed, name, (n,), device=scratch.device, out=scratch[:n])
            for out, alpha, start in targets:
                torch.add(out if start is None else start, eps, alpha=alpha, out=out)
            return
        self.tensor_draws += 1
        self.elements += n
        arrays = [
            (out.numpy(), float(alpha), None if start is None else start.numpy()) for out, alpha, start in targets
        ]

        table, starts = None, []
        if self.mode == "table":  # offsets hashed here, once; the blocks they touch drawn if new
            starts = [table_offset(seed, name, b) for b in range(-(-n // CHUNK))]
            table = cpu_table().ensure(starts, CHUNK, self)

        def fill(blocks: list[int]) -> None:
            eps, tmp, gen = self._worker_state()
            for b in blocks:
                lo, hi = b * CHUNK, min((b + 1) * CHUNK, n)
                if table is None:
                    draw_block(gen, seed, name, b, eps[: hi - lo])
                    e = eps.numpy()[: hi - lo]
                else:  # a window of the table: nothing to draw
                    e = table[starts[b] : starts[b] + hi - lo]
                t = tmp[: hi - lo]
                for out, alpha, start in arrays:  # numpy: single-threaded, so workers never wait on OpenMP
                    np.multiply(e, np.float32(alpha), out=t)
                    np.add(out[lo:hi] if start is None else start[lo:hi], t, out=out[lo:hi])

        self._in_parallel(fill, -(-n // CHUNK))

    def _chunked(self, seed: int, name: str, out: torch.Tensor) -> None:
        """Fill ``out`` (CPU, contiguous) block by block, in parallel when torch has threads."""
        flat = out.view(-1)

        def fill(blocks: list[int]) -> None:
            gen = self._worker_state()[2]
            for b in blocks:
                draw_block(gen, seed, name, b, flat[b * CHUNK : (b + 1) * CHUNK])

        self._in_parallel(fill, -(-flat.numel() // CHUNK))

    def _worker_state(self) -> tuple[torch.Tensor, np.ndarray, torch.Generator]:
        """This thread's block buffers and generator, made on first use."""
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = (torch.empty(CHUNK), np.empty(CHUNK, np.float32), torch.Generator())
        return state

    def _in_parallel(self, fill: Callable[[list[int]], None], num_blocks: int) -> None:
        """Run ``fill`` over blocks 0..num_blocks-1, split into one share per torch thread."""
        threads = min(torch.get_num_threads(), num_blocks)
        if threads == 1:
            fill(list(range(num_blocks)))
            return
        if self._pool_threads < threads - 1:  # trainer.num_threads may change between runs
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="corp-noise")
            self._pool_threads = threads - 1
        shares = [list(range(i, num_blocks, threads)) for i in range(threads)]
        pending = [self._pool.submit(fill, share) for share in shares[1:]]
        fill(shares[0])  # the calling thread takes a share too: few hand-offs per tensor
        for job in pending:
            job.result()
