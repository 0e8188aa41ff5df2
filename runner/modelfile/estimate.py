"""Memory estimate of a GGUF model served by llama.cpp (llama-cpp-python), from the file's metadata alone.

    memory = weights + KV cache + compute buffers + runtime footprint

* weights: the sum of the tensors' bytes in the file (what llama.cpp maps or copies).
* KV cache: per layer, n_ctx x n_head_kv x (key_length + value_length) x bytes per element. With f16
  and key_length == value_length == head_dim this is the usual 2 x n_layer x n_ctx x n_head_kv x
  head_dim x 2 bytes. llama.cpp pads n_ctx up to a multiple of 256 (llama-context.cpp) and, by
  default (`swa_full`), gives sliding-window layers a full-size cache; so does this estimate.
* compute buffers: llama.cpp reserves its worst-case graph for one micro-batch of
  T = min(n_ctx, n_ubatch) tokens with every token an output (llama-context.cpp, graph_reserve), and
  ggml-alloc reuses memory once a tensor's last reader has run, so the buffer is the larger of "inputs plus
  the widest layer" and "the output head". Terms after GPUStack's gguf-parser (file_estimate__llamacpp.go),
  f32 activations, no flash attention (llama-cpp-python's default); the max() was fitted to what
  llama.cpp (llama-cpp-python 0.3.36) reports ("CPU compute buffer size") for the tiny llama, a
  Qwen2.5-0.5B-shaped llama and the real Gemma-3-270M, within 1.75 MiB; a 10 % margin covers what was
  not measured (MoE, fused QKV, other attention variants):

      inputs    = 4 T (n_embd + n_ctx + 3)                          embeddings, KQ mask, token/pos/out ids
      attention = 4 T (2 n_embd + n_head (2 key_len + value_len) + n_head n_ctx)   residual, Q, K/V, KQ
      ffn       = 4 T (3 n_embd + 3 n_ff)                           residual, norm, gate, up, act(gate)*up
      output    = 4 T (n_vocab + 2 n_embd)                          residual, final norm, logits
      compute   = 1.1 x max(inputs + max(attention, ffn), output) + 4 n_vocab     (+ the logits buffer)

  The logits rows of the output term are only touched for tokens whose logits are asked for
  (llama-cpp-python: the last one, unless logits_all), so resident memory is usually lower.
* runtime footprint: 150 MiB of host RAM, GPUStack's figure for llama.cpp's own bootstrap (libraries,
  vocabulary maps, graph metadata).

With n_gpu_layers (llama.cpp semantics) the last n_gpu_layers blocks, their KV cache and a compute buffer go
to the device; the output head too when n_gpu_layers > n_layer (or -1). Token embeddings stay in host RAM.
The header is read by a small streaming reader (`read_gguf_header`) that counts the tokenizer's
string arrays instead of materialising them: `gguf.GGUFReader` builds numpy views for every string
and took 9 s on a 151,936-token vocabulary here; the streaming reader walks the string lengths in
1 MiB blocks (0.1 s for Gemma 3's 262,144 tokens). Tests check that both readers agree. Parsed
metadata is also cached per (path, mtime, size).
"""

from __future__ import annotations

import functools
import math
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from runner.errors import InputError

MIB = 1024 * 1024
RUNTIME_FOOTPRINT_MIB = 150.0  # GPUStack (gguf-parser) host RAM footprint of a llama.cpp instance
CTX_PAD = 256  # llama.cpp: cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256)
F32 = 4

_INPUT_PREFIXES = ("token_embd.", "token_embd_norm.", "position_embd.", "token_types.")
_OUTPUT_PREFIXES = ("output.", "output_norm.", "cls.", "cls_out.")
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class GGUFInfo:
    """What the estimate needs from one GGUF file."""

    path: Path
    arch: str
    n_layer: int
    n_embd: int
    n_head: tuple[int, ...]  # per layer
    n_head_kv: tuple[int, ...]  # per layer (0 for a layer without attention)
    key_length: int
    value_length: int
    n_ff: int  # widest feed-forward activation (experts: n_ff_exp x n_expert_used)
    n_vocab: int
    n_ctx_train: int
    weights_bytes: int  # sum of all tensor bytes
    layer_bytes: tuple[int, ...]  # tensors named blk.<i>.*
    input_bytes: int  # token/position embeddings: always in host RAM
    output_bytes: int  # output head: offloaded only when every layer is
    other_bytes: int  # anything else: host RAM
    tied_output_bytes: int  # token_embd bytes when there is no output.weight (llama.cpp copies it)


@dataclass(frozen=True)
class MemoryEstimate:
    weights_mib: float
    kv_cache_mib: float
    compute_mib: float
    footprint_mib: float
    ram_mib: float  # host RAM the process needs
    gpu_mib: float  # device memory (0 when nothing is offloaded)
    n_layer: int
    n_ctx: int = 0  # context the estimate is for, after llama.cpp's padding
    offloaded_layers: int = 0

    def total_mib(self) -> float:
        return self.ram_mib + self.gpu_mib

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_mib"] = self.total_mib()
        return d


def kv_cache_bytes(
    *,
    n_layer: int,
    n_ctx: int,
    n_head_kv: int,
    head_dim: int,
    kv_type_bytes: float = 2.0,
    value_dim: int | None = None,
) -> float:
    """KV cache bytes: n_layer x n_ctx x n_head_kv x (head_dim + value_dim) x kv_type_bytes.

    With value_dim == head_dim (the default) this is 2 x n_layer x n_ctx x n_head_kv x head_dim x bytes.
    """
    v = head_dim if value_dim is None else value_dim
    return float(n_layer * n_ctx * n_head_kv * (head_dim + v)) * kv_type_bytes


COMPUTE_MARGIN = 1.10


@dataclass(frozen=True)
class ComputeParts:
    inputs: int
    attention: int
    ffn: int
    output: int
    logits_buffer: int  # llama.cpp's host output buffer: one row of logits

    @property
    def layer(self) -> int:
        return max(self.attention, self.ffn)

    @property
    def graph(self) -> int:
        """The worst-case graph's buffer as ggml-alloc lays it out (no margin)."""
        return max(self.inputs + self.layer, self.output)

    @property
    def total(self) -> float:
        return COMPUTE_MARGIN * self.graph + self.logits_buffer


def compute_buffer_parts(
    *,
    n_ctx: int,
    n_ubatch: int,
    n_embd: int,
    n_head: int,
    key_length: int,
    value_length: int,
    n_ff: int,
    n_vocab: int,
) -> ComputeParts:
    """Bytes of llama.cpp's worst-case compute graph pieces (see the module docstring)."""
    t = min(n_ctx, n_ubatch)
    return ComputeParts(
        inputs=F32 * t * (n_embd + n_ctx + 3),
        attention=F32 * t * (2 * n_embd + n_head * (2 * key_length + value_length) + n_head * n_ctx),
        ffn=F32 * t * (3 * n_embd + 3 * n_ff),
        output=F32 * t * (n_vocab + 2 * n_embd),
        logits_buffer=F32 * n_vocab,
    )


def padded_ctx(n_ctx: int) -> int:
    return -(-n_ctx // CTX_PAD) * CTX_PAD


# --- reading GGUF files ------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
_MAX_COUNT = 1 << 24  # sanity bound on KV pairs, tensors, dimensions and array lengths
_SCALAR_FORMATS: dict[int, str] = {  # gguf.GGUFValueType -> struct format
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_MAX_LAYERS = 4096
_KEEP_ARRAY_MAX = 4096  # numeric arrays up to this length are kept (per-layer head counts...)


class GGUFFormatError(ValueError):
    pass


@dataclass(frozen=True)
class GGUFArray:
    """An array value the streaming reader skipped: its element type and length only."""

    item_type: int
    count: int


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order (ne0, ne1, ...)
    ggml_type: int
    n_bytes: int
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    fields: dict[str, Any] = field(repr=False)  # scalars, short numeric lists, GGUFArray for the rest
    tensors: tuple[GGUFTensorInfo, ...] = field(repr=False)
    data_offset: int
    file_size: int


_BLOCK = 1 << 20


class _Stream:
    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.size, self.order = f, size, "<"

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise GGUFFormatError(f"truncated: wanted {n} bytes at offset {self.f.tell() - len(b)}")
        return b

    def unpack(self, fmt: str) -> Any:
        fmt = self.order + fmt
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def count(self, what: str) -> int:
        n = int(self.unpack("Q"))
        if n > _MAX_COUNT:
            raise GGUFFormatError(f"implausible {what} count {n}")
        return n

    def string(self) -> str:
        n = int(self.unpack("Q"))
        if n > self.size:
            raise GGUFFormatError(f"string length {n} beyond the file size")
        return self.read(n).decode("utf-8", "replace")

    def skip(self, n: int) -> None:
        if self.f.tell() + n > self.size:
            raise GGUFFormatError("truncated: value runs past the end of the file")
        self.f.seek(n, os.SEEK_CUR)

    def skip_strings(self, n: int) -> None:
        """Skip n length-prefixed strings. Each length must be read to find the next one; they are read
        from 1 MiB blocks (not one read and one seek per string: a 262,144-token vocabulary took 0.8 s)."""
        length_of = struct.Struct(self.order + "Q").unpack_from
        pos = self.f.tell()
        block, start = b"", pos  # block holds the file's bytes from `start` on
        end = 0  # where the current block's last whole length field ends, relative to the file
        for _ in range(n):
            if pos + 8 > end:
                if pos > self.size:
                    break
                self.f.seek(pos)
                block, start = self.f.read(_BLOCK), pos
                if len(block) < 8:
                    raise GGUFFormatError(f"truncated: wanted 8 bytes at offset {pos}")
                end = start + len(block)
            pos += 8 + length_of(block, pos - start)[0]
        if pos > self.size:
            raise GGUFFormatError("truncated: value runs past the end of the file")
        self.f.seek(pos)

    def value(self, vtype: int, keep_array: bool) -> Any:
        if vtype in _SCALAR_FORMATS:
            return self.unpack(_SCALAR_FORMATS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype != _ARRAY:
            raise GGUFFormatError(f"unknown value type {vtype}")
        item = int(self.unpack("I"))
        n = self.count("array")
        if item == _STRING:
            self.skip_strings(n)
            return GGUFArray(item, n)
        if item in _SCALAR_FORMATS:
            if keep_array and n <= _KEEP_ARRAY_MAX:
                fmt = f"{self.order}{n}{_SCALAR_FORMATS[item]}"
                return list(struct.unpack(fmt, self.read(struct.calcsize(fmt))))
            self.skip(n * struct.calcsize(_SCALAR_FORMATS[item]))
            return GGUFArray(item, n)
        if item == _ARRAY:
            raise GGUFFormatError("nested arrays are not supported")
        raise GGUFFormatError(f"unknown array item type {item}")


def read_gguf_header(path: Path) -> GGUFHeader:
    """Read a GGUF file's key/values and tensor infos (not the tensor data); GGUFFormatError if malformed."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb", buffering=1 << 16) as f:
        size = os.fstat(f.fileno()).st_size
        s = _Stream(f, size)
        if s.read(4) != GGUF_MAGIC:
            raise GGUFFormatError("GGUF magic invalid")
        raw = s.read(4)
        version = struct.unpack("<I", raw)[0]
        if version & 0xFFFF == 0:  # written big-endian
            s.order, version = ">", struct.unpack(">I", raw)[0]
        if version not in (2, 3):
            raise GGUFFormatError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = s.count("tensor"), s.count("key/value")
        fields: dict[str, Any] = {}
        for _ in range(n_kv):
            key = s.string()
            fields[key] = s.value(int(s.unpack("I")), keep_array=not key.startswith("tokenizer."))
        tensors: list[GGUFTensorInfo] = []
        for _ in range(n_tensors):
            name = s.string()
            n_dims = int(s.unpack("I"))
            if n_dims > 8:
                raise GGUFFormatError(f"tensor {name!r}: {n_dims} dimensions")
            shape = tuple(int(s.unpack("Q")) for _ in range(n_dims))
            gtype = int(s.unpack("I"))
            offset = int(s.unpack("Q"))
            try:
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(gtype)]
            except (ValueError, KeyError) as exc:
                raise GGUFFormatError(f"tensor {name!r}: unknown ggml type {gtype}") from exc
            n_elements = math.prod(shape)
            tensors.append(GGUFTensorInfo(name, shape, gtype, n_elements // block * type_size, offset))
        align = fields.get("general.alignment", 32)
        if not isinstance(align, int) or align <= 0 or align & (align - 1):
            raise GGUFFormatError(f"invalid general.alignment {align!r}")
        data_offset = -(-f.tell() // align) * align
    end = max((t.offset + t.n_bytes for t in tensors), default=0)
    if data_offset + end > size:
        raise GGUFFormatError(f"truncated: tensor data ends at byte {data_offset + end}, the file has {size}")
    return GGUFHeader(version, fields, tuple(tensors), data_offset, size)


def _field(fields: dict[str, Any], key: str) -> Any:
    v = fields.get(key)
    return None if isinstance(v, GGUFArray) else v


def _as_ints(value: Any) -> list[int] | None:
    if value is None or isinstance(value, (str, float)):
        return None
    if isinstance(value, (list, tuple)):
        try:
            return [int(v) for v in value]
        except (TypeError, ValueError):
            return None
    try:
        return [int(value)]
    except (TypeError, ValueError):
        return None


def _per_layer(values: list[int], n_layer: int) -> tuple[int, ...]:
    if len(values) == 1:
        return (values[0],) * n_layer
    if len(values) < n_layer:
        values = values + [values[-1]] * (n_layer - len(values))
    return tuple(values[:n_layer])


def _parse(path: Path) -> GGUFInfo:
    try:
        header = read_gguf_header(path)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such model file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, not a GGUF file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read the model file: {exc}") from exc
    except GGUFFormatError as exc:
        raise InputError(f"{path}: not a readable GGUF file ({exc})") from exc

    fields = header.fields
    arch = _field(fields, "general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InputError(f"{path}: missing GGUF key 'general.architecture'")

    def required_ints(name: str) -> list[int]:
        key = f"{arch}.{name}"
        if key not in fields:
            raise InputError(f"{path}: missing GGUF key '{key}'")
        v = _as_ints(_field(fields, key))
        if not v:
            raise InputError(f"{path}: GGUF key '{key}' is not an integer: {fields[key]!r}")
        return v

    def optional_ints(name: str) -> list[int] | None:
        return _as_ints(_field(fields, f"{arch}.{name}"))

    n_layer = required_ints("block_count")[0]
    n_embd = required_ints("embedding_length")[0]
    if not (0 < n_layer <= _MAX_LAYERS) or n_embd <= 0:
        raise InputError(
            f"{path}: '{arch}.block_count' ({n_layer}) must be in 1..{_MAX_LAYERS} and "
            f"'{arch}.embedding_length' ({n_embd}) positive"
        )
    n_head = _per_layer(required_ints("attention.head_count"), n_layer)
    n_head_max = max(n_head)
    if n_head_max <= 0:
        raise InputError(f"{path}: '{arch}.attention.head_count' must be positive")
    n_head_kv = _per_layer(optional_ints("attention.head_count_kv") or list(n_head), n_layer)
    key_length = (optional_ints("attention.key_length") or [n_embd // n_head_max])[0]
    value_length = (optional_ints("attention.value_length") or [key_length])[0]

    ff = optional_ints("feed_forward_length")
    n_ff = max(ff) if ff else 4 * n_embd
    ff_exp = optional_ints("expert_feed_forward_length")
    n_used = optional_ints("expert_used_count")
    if ff_exp and n_used:
        n_ff = max(n_ff, max(ff_exp) * n_used[0])

    layer_bytes = [0] * n_layer
    input_bytes = output_bytes = other_bytes = 0
    tensor_shapes: dict[str, list[int]] = {}
    for t in header.tensors:
        nbytes = t.n_bytes
        tensor_shapes[t.name] = list(t.shape)
        m = _BLOCK_RE.match(t.name)
        if m and int(m.group(1)) < n_layer:
            layer_bytes[int(m.group(1))] += nbytes
        elif t.name.startswith(_INPUT_PREFIXES):
            input_bytes += nbytes
        elif t.name.startswith(_OUTPUT_PREFIXES):
            output_bytes += nbytes
        else:
            other_bytes += nbytes
    weights_bytes = sum(layer_bytes) + input_bytes + output_bytes + other_bytes
    tied = 0
    if "output.weight" not in tensor_shapes and "token_embd.weight" in tensor_shapes:
        tied = next(t.n_bytes for t in header.tensors if t.name == "token_embd.weight")

    n_vocab = 0
    for name in ("output.weight", "token_embd.weight"):
        shape = tensor_shapes.get(name)
        if shape and len(shape) >= 2:
            n_vocab = shape[1]
            break
    if not n_vocab:
        n_vocab = (optional_ints("vocab_size") or [0])[0]
    if not n_vocab:
        tokens = fields.get("tokenizer.ggml.tokens")
        n_vocab = tokens.count if isinstance(tokens, GGUFArray) else 0
    if not n_vocab:
        raise InputError(f"{path}: missing GGUF key 'tokenizer.ggml.tokens' (no vocabulary size)")

    n_ctx_train = (optional_ints("context_length") or [0])[0]
    return GGUFInfo(
        path=path,
        arch=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        key_length=key_length,
        value_length=value_length,
        n_ff=n_ff,
        n_vocab=n_vocab,
        n_ctx_train=n_ctx_train,
        weights_bytes=weights_bytes,
        layer_bytes=tuple(layer_bytes),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        other_bytes=other_bytes,
        tied_output_bytes=tied,
    )


@functools.lru_cache(maxsize=128)
def _parse_cached(path: str, mtime_ns: int, size: int) -> GGUFInfo:
    del mtime_ns, size  # part of the cache key only
    return _parse(Path(path))


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse (or return the cached parse of) a GGUF file's metadata; InputError if it cannot."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such model file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read the model file: {exc}") from exc
    return _parse_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


def clear_cache() -> None:
    _parse_cached.cache_clear()


# --- the estimate ------------------------------------------------------------------------------------


def _kv_layer_bytes(info: GGUFInfo, n_ctx: int, kv_type_bytes: float) -> list[float]:
    return [
        kv_cache_bytes(
            n_layer=1,
            n_ctx=n_ctx,
            n_head_kv=h,
            head_dim=info.key_length,
            value_dim=info.value_length,
            kv_type_bytes=kv_type_bytes,
        )
        for h in info.n_head_kv
    ]


def estimate_from_info(
    info: GGUFInfo,
    *,
    n_ctx: int,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    n_ubatch: int = 512,
    kv_type_bytes: float = 2.0,
    footprint_mib: float = RUNTIME_FOOTPRINT_MIB,
) -> MemoryEstimate:
    if n_ctx < 0:
        raise InputError(f"{info.path}: n_ctx must be >= 0 (0 = the model's context_length), got {n_ctx}")
    if n_batch <= 0 or n_ubatch <= 0:
        raise InputError(f"{info.path}: n_batch and n_ubatch must be positive, got {n_batch}, {n_ubatch}")
    if not math.isfinite(kv_type_bytes) or kv_type_bytes <= 0:
        raise InputError(f"{info.path}: kv_type_bytes must be positive, got {kv_type_bytes}")
    if n_ctx == 0:
        if info.n_ctx_train <= 0:
            raise InputError(f"{info.path}: n_ctx=0 needs GGUF key '{info.arch}.context_length'")
        n_ctx = info.n_ctx_train
    ctx = padded_ctx(n_ctx)
    n_layer = info.n_layer

    if n_gpu_layers < 0 or n_gpu_layers > n_layer:
        n_off, output_on_gpu = n_layer, True
    else:
        n_off, output_on_gpu = n_gpu_layers, False
    first_off = n_layer - n_off  # llama.cpp offloads the last n_gpu_layers blocks

    kv_layers = _kv_layer_bytes(info, ctx, kv_type_bytes)
    kv_gpu = sum(kv_layers[first_off:])
    kv_cpu = sum(kv_layers[:first_off])

    w_gpu = float(sum(info.layer_bytes[first_off:]))
    w_cpu = float(info.weights_bytes) - w_gpu
    if output_on_gpu:
        w_cpu -= info.output_bytes
        w_gpu += info.output_bytes + info.tied_output_bytes  # tied embeddings: the GPU gets its own copy

    parts = compute_buffer_parts(
        n_ctx=ctx,
        n_ubatch=min(n_batch, n_ubatch),
        n_embd=info.n_embd,
        n_head=max(info.n_head),
        key_length=info.key_length,
        value_length=info.value_length,
        n_ff=info.n_ff,
        n_vocab=info.n_vocab,
    )
    m = COMPUTE_MARGIN
    if n_off == 0:
        c_cpu, c_gpu = float(parts.total), 0.0
    else:
        # The device runs the offloaded layers (and the head when it has it); the host keeps the
        # inputs, its own layers, the head otherwise, and the logits buffer.
        gpu_graph = parts.inputs + parts.layer if not output_on_gpu else parts.graph
        c_gpu = m * gpu_graph
        if first_off > 0 and not output_on_gpu:
            cpu_graph = parts.graph
        elif first_off > 0:
            cpu_graph = parts.inputs + parts.layer
        elif not output_on_gpu:
            cpu_graph = max(parts.inputs, parts.output)
        else:
            cpu_graph = parts.inputs
        c_cpu = m * cpu_graph + parts.logits_buffer

    ram = (w_cpu + kv_cpu + c_cpu) / MIB + footprint_mib
    gpu = (w_gpu + kv_gpu + c_gpu) / MIB
    return MemoryEstimate(
        weights_mib=(w_cpu + w_gpu) / MIB,
        kv_cache_mib=(kv_cpu + kv_gpu) / MIB,
        compute_mib=(c_cpu + c_gpu) / MIB,
        footprint_mib=footprint_mib,
        ram_mib=ram,
        gpu_mib=gpu,
        n_layer=n_layer,
        n_ctx=ctx,
        offloaded_layers=n_off,
    )


def estimate_memory(
    path: Path,
    *,
    n_ctx: int,
    n_gpu_layers: int = 0,
    n_batch: int = 512,
    n_ubatch: int = 512,
    kv_type_bytes: float = 2.0,
) -> MemoryEstimate:
    """Estimate the memory llama.cpp needs to serve the GGUF model at `path` (see the module docstring).

    n_ctx: context length (0 = the model's context_length); n_gpu_layers: blocks offloaded to the GPU
    (-1 or more than the block count = all, output head included); kv_type_bytes: bytes per KV element
    (2.0 for f16, 34/32 for q8_0). Raises InputError naming the file for a non-GGUF file or a missing key.
    """
    return estimate_from_info(
        read_gguf_info(path),
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        kv_type_bytes=kv_type_bytes,
    )


def layer_kv_mib(info: GGUFInfo, n_ctx: int, kv_type_bytes: float = 2.0) -> Sequence[float]:
    """Per-layer KV cache MiB at n_ctx (padded like llama.cpp)."""
    return [b / MIB for b in _kv_layer_bytes(info, padded_ctx(n_ctx), kv_type_bytes)]
