"""A tiny random-weight llama GGUF for tests: real inference in llama.cpp, no download.

The file is a complete `llama` model (2 layers, 64-wide, grouped-query attention with 4 query heads and
2 KV heads) with a SentencePiece-style (`llama`) vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens
`<0x00>`..`<0xFF>` (so any UTF-8 text tokenizes through byte fallback), `▁`, the printable ASCII characters
and a few `▁`-prefixed words. Weights are drawn from numpy's PCG64 generator with the given seed, so the
same seed gives a byte-identical file (with the same `gguf` package version) and a stable sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

from runner.errors import EdgejarError

ARCH = "llama"
N_LAYER = 2
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 128
N_CTX_TRAIN = 4096
RMS_EPS = 1e-5
ROPE_FREQ_BASE = 10000.0

# sha256 of the seed-0 file, as written with this gguf package version (tests check it only with that one).
SEED0_SHA256 = "d31553da7e264922b88d3979c6e1c7bcf44a7441380220325e9faa141df4b1de"
SEED0_WITH_GGUF = "0.19.0"

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SPACE = "\u2581"  # SentencePiece's word-boundary marker
_WORDS: tuple[str, ...] = ("the", "and", "of", "to", "in", "is", "it", "hello", "world", "jar", "brain")


@dataclass(frozen=True)
class TinyModelResult:
    path: Path
    sha256: str
    written: bool  # False when an identical file was already there (left untouched)


@dataclass(frozen=True)
class LlamaShape:
    """Hyperparameters of a random-weight llama model."""

    n_layer: int = N_LAYER
    n_embd: int = N_EMBD
    n_head: int = N_HEAD
    n_head_kv: int = N_HEAD_KV
    n_ff: int = N_FF
    n_vocab: int | None = None  # None: the tiny vocabulary; more: padded with unused tokens
    tied_embeddings: bool = False  # no output.weight: llama.cpp uses token_embd for the logits
    n_ctx_train: int = N_CTX_TRAIN


TINY = LlamaShape()
# Qwen2.5-0.5B's sizes in a llama file (same memory behaviour; no q/k/v biases): for checking the
# estimate at a realistic scale (151936-token vocabulary, GQA 14/2, tied embeddings), not for tests.
QWEN25_05B_SHAPE = LlamaShape(
    n_layer=24,
    n_embd=896,
    n_head=14,
    n_head_kv=2,
    n_ff=4864,
    n_vocab=151936,
    tied_embeddings=True,
    n_ctx_train=32768,
)
QTYPES: dict[str, gguf.GGMLQuantizationType] = {
    "f16": gguf.GGMLQuantizationType.F16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0,
    "q4_0": gguf.GGMLQuantizationType.Q4_0,
}


def tiny_vocab(n_vocab: int | None = None) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the tiny SPM vocabulary (ids are list positions)."""
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(gguf.TokenType.BYTE)
    normal: list[str] = [SPACE, *(chr(c) for c in range(0x21, 0x7F))]
    for word in _WORDS:  # every prefix, so SPM's pairwise merges can reach the whole word
        for i in range(1, len(word) + 1):
            piece = SPACE + word[:i]
            if piece not in normal:
                normal.append(piece)
    tokens.extend(normal)
    types.extend([gguf.TokenType.NORMAL] * len(normal))
    # SPM merges the pair whose result has the highest score: prefer longer pieces.
    scores = [0.0] * (len(tokens) - len(normal)) + [float(len(t)) - 10.0 for t in normal]
    if n_vocab is not None:
        if n_vocab < len(tokens):
            raise ValueError(f"n_vocab must be at least {len(tokens)}, got {n_vocab}")
        pad = n_vocab - len(tokens)
        tokens.extend(f"<unused{i}>" for i in range(pad))
        scores.extend([-1000.0] * pad)
        types.extend([gguf.TokenType.UNUSED] * pad)
    return tokens, scores, [int(t) for t in types]


Data = tuple[npt.NDArray[np.generic], gguf.GGMLQuantizationType | None]  # array, raw ggml type if quantized
Tensor = tuple[str, npt.NDArray[np.generic], gguf.GGMLQuantizationType | None]


def _tensors(seed: int, n_vocab: int, shape: LlamaShape = TINY, qtype: str = "f16") -> list[Tensor]:
    """Tensors in file order; numpy shapes are ggml's `ne` reversed (rows, cols)."""
    rng = np.random.default_rng(seed)
    qt = QTYPES[qtype]

    def mat(rows: int, cols: int) -> Data:
        w = rng.standard_normal((rows, cols)) / np.sqrt(cols)
        if qt == gguf.GGMLQuantizationType.F16:
            return w.astype(np.float16), None
        return gguf.quants.quantize(w.astype(np.float32), qt), qt

    def norm(n: int) -> Data:
        return np.ones(n, dtype=np.float32), None

    e, ff, n_kv = shape.n_embd, shape.n_ff, shape.n_head_kv * (shape.n_embd // shape.n_head)
    out: list[tuple[str, Data]] = [("token_embd.weight", mat(n_vocab, e))]
    for i in range(shape.n_layer):
        out += [
            (f"blk.{i}.attn_norm.weight", norm(e)),
            (f"blk.{i}.attn_q.weight", mat(e, e)),
            (f"blk.{i}.attn_k.weight", mat(n_kv, e)),
            (f"blk.{i}.attn_v.weight", mat(n_kv, e)),
            (f"blk.{i}.attn_output.weight", mat(e, e)),
            (f"blk.{i}.ffn_norm.weight", norm(e)),
            (f"blk.{i}.ffn_gate.weight", mat(ff, e)),
            (f"blk.{i}.ffn_up.weight", mat(ff, e)),
            (f"blk.{i}.ffn_down.weight", mat(e, ff)),
        ]
    out.append(("output_norm.weight", norm(e)))
    if not shape.tied_embeddings:
        out.append(("output.weight", mat(n_vocab, e)))
    return [(name, data, raw) for name, (data, raw) in out]


def _write_gguf(path: Path, seed: int, shape: LlamaShape = TINY, qtype: str = "f16") -> None:
    tokens, scores, types = tiny_vocab(shape.n_vocab)
    head_dim = shape.n_embd // shape.n_head
    w = gguf.GGUFWriter(path, ARCH)
    if shape == TINY and qtype == "f16":
        w.add_name("edgejar-tiny-random-llama")
        w.add_description(
            f"edgejar test model: random weights (numpy PCG64 seed {seed}), not a language model"
        )
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    else:
        w.add_name(f"edgejar-random-llama-{shape.n_layer}x{shape.n_embd}-{qtype}")
        w.add_description(f"edgejar random weights (numpy PCG64 seed {seed}), not a language model")
        w.add_file_type(
            {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}.get(
                qtype, gguf.LlamaFileType.MOSTLY_Q4_0
            )
        )
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(ROPE_FREQ_BASE)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(UNK_ID)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    for name, data, raw_dtype in _tensors(seed, len(tokens), shape, qtype):
        w.add_tensor(name, data, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_tiny_model(
    path: Path, *, seed: int = 0, shape: LlamaShape = TINY, qtype: str = "f16"
) -> TinyModelResult:
    """Write the tiny model (or another random llama `shape`) to `path` atomically.

    An identical file already at `path` is left untouched (same inode, same mtime).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise EdgejarError(f"{path}: cannot write the model file: {exc}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write_gguf(tmp, seed, shape, qtype)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        if path.is_file() and sha256_file(path) == digest:
            return TinyModelResult(path, digest, written=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return TinyModelResult(path, digest, written=True)
    except OSError as exc:
        raise EdgejarError(f"{path}: cannot write the tiny model: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_tiny_model(path: Path, *, seed: int = 0) -> str:
    """Write the tiny random llama GGUF to `path` (atomically, idempotently); return its sha256."""
    return ensure_tiny_model(path, seed=seed).sha256


def write_random_llama(path: Path, shape: LlamaShape, *, seed: int = 0, qtype: str = "f16") -> str:
    """Write a random-weight llama of another `shape` (e.g. QWEN25_05B_SHAPE), `qtype` f16/q8_0/q4_0."""
    if qtype not in QTYPES:
        raise ValueError(f"qtype must be one of {sorted(QTYPES)}, got {qtype!r}")
    return ensure_tiny_model(path, seed=seed, shape=shape, qtype=qtype).sha256
