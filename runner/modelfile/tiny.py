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


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
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
    return tokens, scores, [int(t) for t in types]


def _tensors(seed: int, n_vocab: int) -> list[tuple[str, npt.NDArray[np.generic]]]:
    """Tensors in file order; numpy shapes are ggml's `ne` reversed (rows, cols)."""
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int) -> npt.NDArray[np.float16]:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float16)

    def norm(n: int) -> npt.NDArray[np.float32]:
        return np.ones(n, dtype=np.float32)

    n_kv = N_HEAD_KV * HEAD_DIM
    out: list[tuple[str, npt.NDArray[np.generic]]] = [("token_embd.weight", mat(n_vocab, N_EMBD))]
    for i in range(N_LAYER):
        out += [
            (f"blk.{i}.attn_norm.weight", norm(N_EMBD)),
            (f"blk.{i}.attn_q.weight", mat(N_EMBD, N_EMBD)),
            (f"blk.{i}.attn_k.weight", mat(n_kv, N_EMBD)),
            (f"blk.{i}.attn_v.weight", mat(n_kv, N_EMBD)),
            (f"blk.{i}.attn_output.weight", mat(N_EMBD, N_EMBD)),
            (f"blk.{i}.ffn_norm.weight", norm(N_EMBD)),
            (f"blk.{i}.ffn_gate.weight", mat(N_FF, N_EMBD)),
            (f"blk.{i}.ffn_up.weight", mat(N_FF, N_EMBD)),
            (f"blk.{i}.ffn_down.weight", mat(N_EMBD, N_FF)),
        ]
    out += [("output_norm.weight", norm(N_EMBD)), ("output.weight", mat(n_vocab, N_EMBD))]
    return out


def _write_gguf(path: Path, seed: int) -> None:
    tokens, scores, types = tiny_vocab()
    w = gguf.GGUFWriter(path, ARCH)
    w.add_name("edgejar-tiny-random-llama")
    w.add_description(f"edgejar test model: random weights (numpy PCG64 seed {seed}), not a language model")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(HEAD_DIM)
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
    for name, data in _tensors(seed, len(tokens)):
        w.add_tensor(name, data)
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


def ensure_tiny_model(path: Path, *, seed: int = 0) -> TinyModelResult:
    """Write the tiny model to `path` atomically unless an identical file is already there."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise EdgejarError(f"{path}: cannot write the tiny model: {exc}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write_gguf(tmp, seed)
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
