"""runner.modelfile: the tiny test model, the GGUF memory estimator and the `model` command."""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.cli import main
from runner.errors import InputError
from runner.modelfile import estimate as est
from runner.modelfile.estimate import MIB, MemoryEstimate, estimate_memory, kv_cache_bytes, read_gguf_info
from runner.modelfile.tiny import (
    SEED0_SHA256,
    SEED0_WITH_GGUF,
    ensure_tiny_model,
    tiny_vocab,
    write_tiny_model,
)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    write_tiny_model(path, seed=0)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_meta_gguf(
    path: Path,
    arch: str,
    *,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_head_kv: int | None = None,
    key_length: int | None = None,
    n_vocab: int = 32,
    skip: tuple[str, ...] = (),
) -> Path:
    """A metadata-only GGUF with an architecture's hyperparameters and small fake tensors."""
    w = gguf.GGUFWriter(path, arch)
    keys: dict[str, int | None] = {
        "block_count": n_layer,
        "embedding_length": n_embd,
        "attention.head_count": n_head,
        "attention.head_count_kv": n_head_kv,
        "attention.key_length": key_length,
        "attention.value_length": key_length,
        "feed_forward_length": 4 * n_embd,
        "context_length": 32768,
    }
    for k, v in keys.items():
        if v is not None and k not in skip:
            w.add_uint32(f"{arch}.{k}", v)
    w.add_tensor("token_embd.weight", np.zeros((n_vocab, 8), dtype=np.float32))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.zeros(8, dtype=np.float32))
    w.add_tensor("output_norm.weight", np.zeros(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# --- the tiny model ----------------------------------------------------------------------------------


def test_tiny_is_deterministic_per_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    sha_a = write_tiny_model(a, seed=0)
    sha_b = write_tiny_model(b, seed=0)
    sha_c = write_tiny_model(c, seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert sha_a == sha_b == _sha(a)
    assert sha_c == _sha(c) != sha_a
    assert a.stat().st_size < 1024 * 1024


@pytest.mark.skipif(
    version("gguf") != SEED0_WITH_GGUF, reason=f"seed-0 sha256 pinned with gguf {SEED0_WITH_GGUF}"
)
def test_tiny_seed0_sha256_is_pinned(tiny: Path) -> None:
    assert _sha(tiny) == SEED0_SHA256


def test_tiny_rewrite_is_idempotent_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "models" / "tiny.gguf"
    first = ensure_tiny_model(path, seed=3)
    assert first.written
    before = path.stat()
    again = ensure_tiny_model(path, seed=3)
    assert not again.written and again.sha256 == first.sha256
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    path.write_bytes(b"stale")
    assert ensure_tiny_model(path, seed=3).written
    assert _sha(path) == first.sha256
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf"]  # no temp files left


def test_tiny_vocab_has_what_llama_cpp_needs() -> None:
    tokens, scores, types = tiny_vocab()
    assert len(tokens) == len(scores) == len(types) == len(set(tokens))
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert all(f"<0x{b:02X}>" in tokens for b in range(256))  # byte fallback: any text tokenizes
    assert types[tokens.index("<0x0A>")] == gguf.TokenType.BYTE


def test_tiny_metadata(tiny: Path) -> None:
    info = read_gguf_info(tiny)
    assert (info.arch, info.n_layer, info.n_embd, info.n_head, info.n_head_kv) == (
        "llama",
        2,
        64,
        (4, 4),
        (2, 2),
    )
    assert (info.key_length, info.value_length, info.n_vocab) == (16, 16, len(tiny_vocab()[0]))


# --- the estimate ------------------------------------------------------------------------------------


def test_kv_formula_matches_known_models() -> None:
    # field-notes: Qwen2.5-1.5B (28 layers, 2 KV heads, head_dim 1536/12 = 128) 112 MiB at 4k; 7B 224 MiB.
    assert kv_cache_bytes(n_layer=28, n_ctx=4096, n_head_kv=2, head_dim=128) == 112 * MIB
    assert kv_cache_bytes(n_layer=28, n_ctx=4096, n_head_kv=4, head_dim=128) == 224 * MIB
    assert kv_cache_bytes(n_layer=28, n_ctx=4096, n_head_kv=4, head_dim=128, kv_type_bytes=1.0) == 112 * MIB


@pytest.mark.parametrize(
    ("arch", "n_layer", "n_embd", "n_head", "n_head_kv", "key_length", "kv_mib"),
    [
        ("qwen2", 28, 1536, 12, 2, None, 112.0),  # Qwen2.5-1.5B: head_dim = embedding_length / head_count
        ("qwen2", 28, 3584, 28, 4, None, 224.0),  # Qwen2.5-7B
        ("gemma3", 18, 640, 4, 1, 256, 72.0),  # Gemma-3-270M: explicit key_length, another arch prefix
    ],
)
def test_kv_from_gguf_metadata(
    tmp_path: Path,
    arch: str,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_head_kv: int,
    key_length: int | None,
    kv_mib: float,
) -> None:
    path = _write_meta_gguf(
        tmp_path / f"{arch}.gguf",
        arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        key_length=key_length,
    )
    e = estimate_memory(path, n_ctx=4096)
    assert e.kv_cache_mib == kv_mib
    assert e.n_layer == n_layer


def test_head_count_kv_defaults_to_head_count(tmp_path: Path) -> None:
    path = _write_meta_gguf(tmp_path / "m.gguf", "llama", n_layer=2, n_embd=64, n_head=4)
    assert read_gguf_info(path).n_head_kv == (4, 4)


def test_estimate_tiny_model(tiny: Path) -> None:
    reader = gguf.GGUFReader(tiny)
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    e = estimate_memory(tiny, n_ctx=2048)
    assert e.weights_mib * MIB == tensor_bytes
    assert e.kv_cache_mib * MIB == 2 * 2 * 2048 * 2 * 16 * 2  # 2 x n_layer x n_ctx x n_head_kv x head_dim x 2
    assert e.footprint_mib == 150.0
    assert e.compute_mib > 0
    assert e.gpu_mib == 0 and e.ram_mib == pytest.approx(e.total_mib())
    assert e.total_mib() == pytest.approx(e.weights_mib + e.kv_cache_mib + e.compute_mib + e.footprint_mib)


def test_n_ctx_is_padded_like_llama_cpp(tiny: Path) -> None:
    assert estimate_memory(tiny, n_ctx=1000).n_ctx == 1024
    assert estimate_memory(tiny, n_ctx=1000).kv_cache_mib == estimate_memory(tiny, n_ctx=1024).kv_cache_mib
    assert estimate_memory(tiny, n_ctx=0).n_ctx == 4096  # 0 = the model's context_length


def test_gpu_split(tiny: Path) -> None:
    info = read_gguf_info(tiny)
    cpu = estimate_memory(tiny, n_ctx=2048, n_gpu_layers=0)
    one = estimate_memory(tiny, n_ctx=2048, n_gpu_layers=1)
    two = estimate_memory(tiny, n_ctx=2048, n_gpu_layers=2)
    full = estimate_memory(tiny, n_ctx=2048, n_gpu_layers=-1)
    assert cpu.gpu_mib == 0
    assert one.offloaded_layers == 1 and two.offloaded_layers == 2 and full.offloaded_layers == 2
    # one layer's weights and half the KV move to the GPU
    assert one.ram_mib < cpu.ram_mib
    assert one.gpu_mib * MIB >= info.layer_bytes[1] + cpu.kv_cache_mib * MIB / 2
    # n_gpu_layers == n_layer: all blocks but not the output head (llama.cpp offloads it only past n_layer)
    parts = est.compute_buffer_parts(
        n_ctx=2048,
        n_ubatch=512,
        n_embd=64,
        n_head=4,
        key_length=16,
        value_length=16,
        n_ff=128,
        n_vocab=info.n_vocab,
    )
    m = est.COMPUTE_MARGIN
    head_gpu = m * (parts.graph - (parts.inputs + parts.layer))
    head_cpu = m * (max(parts.inputs, parts.output) - parts.inputs)
    assert (full.gpu_mib - two.gpu_mib) * MIB == pytest.approx(info.output_bytes + head_gpu)
    assert (two.ram_mib - full.ram_mib) * MIB == pytest.approx(info.output_bytes + head_cpu)
    assert estimate_memory(tiny, n_ctx=2048, n_gpu_layers=3) == full
    assert estimate_memory(tiny, n_ctx=2048, n_gpu_layers=99) == full
    for e in (cpu, one, two, full):
        assert e.total_mib() == pytest.approx(
            e.weights_mib + e.kv_cache_mib + e.compute_mib + e.footprint_mib
        )
        assert e.weights_mib == cpu.weights_mib and e.kv_cache_mib == cpu.kv_cache_mib


@settings(max_examples=60, deadline=None)
@given(n_ctx=st.integers(1, 40000), ub=st.integers(1, 4096))
def test_offloading_moves_memory_monotonically(tiny: Path, n_ctx: int, ub: int) -> None:
    prev: MemoryEstimate | None = None
    for g in (0, 1, 2, -1):
        e = estimate_memory(tiny, n_ctx=n_ctx, n_gpu_layers=g, n_batch=4096, n_ubatch=ub)
        assert e.ram_mib > 0 and e.gpu_mib >= 0
        if prev is not None:
            assert e.gpu_mib >= prev.gpu_mib and e.ram_mib <= prev.ram_mib
        prev = e


def test_tied_embeddings_are_copied_to_gpu_with_the_output_head(tmp_path: Path) -> None:
    path = _write_meta_gguf(tmp_path / "tied.gguf", "qwen2", n_layer=2, n_embd=64, n_head=4, n_vocab=1000)
    info = read_gguf_info(path)
    assert info.tied_output_bytes == 1000 * 8 * 4
    full = estimate_memory(path, n_ctx=512, n_gpu_layers=-1)
    assert full.weights_mib * MIB == info.weights_bytes + info.tied_output_bytes


def test_metadata_is_cached_per_path_mtime_size(tmp_path: Path) -> None:
    path = _write_meta_gguf(tmp_path / "m.gguf", "llama", n_layer=2, n_embd=64, n_head=4)
    first = read_gguf_info(path)
    assert read_gguf_info(path) is first
    _write_meta_gguf(path, "llama", n_layer=3, n_embd=64, n_head=4)
    assert read_gguf_info(path).n_layer == 3
    est.clear_cache()
    assert read_gguf_info(path) is not first


def test_bad_input_names_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(InputError, match=r"garbage\.gguf"):
        estimate_memory(garbage, n_ctx=512)
    with pytest.raises(InputError, match=r"missing\.gguf"):
        estimate_memory(tmp_path / "missing.gguf", n_ctx=512)
    with pytest.raises(InputError, match="directory"):
        estimate_memory(tmp_path, n_ctx=512)


def test_truncated_gguf_is_input_error(tiny: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny.read_bytes()[:3000])
    with pytest.raises(InputError, match=r"cut\.gguf"):
        estimate_memory(cut, n_ctx=512)


@pytest.mark.parametrize("key", ["block_count", "embedding_length", "attention.head_count"])
def test_missing_key_is_named(tmp_path: Path, key: str) -> None:
    path = _write_meta_gguf(tmp_path / "m.gguf", "gemma3", n_layer=2, n_embd=64, n_head=4, skip=(key,))
    with pytest.raises(InputError, match=rf"m\.gguf.*'gemma3\.{key}'"):
        estimate_memory(path, n_ctx=512)


def _reader_view(path: Path) -> tuple[dict[str, object], list[tuple[str, tuple[int, ...], int]]]:
    """Scalars and tensor sizes as gguf.GGUFReader sees them."""
    r = gguf.GGUFReader(path)
    scalars = {
        k: f.contents()
        for k, f in r.fields.items()
        if not k.startswith("GGUF.") and f.types and f.types[0] != gguf.GGUFValueType.ARRAY
    }
    return scalars, [(t.name, tuple(int(x) for x in t.shape), int(t.n_bytes)) for t in r.tensors]


@pytest.mark.parametrize("endian", [gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG])
def test_streaming_reader_agrees_with_gguf_reader(
    tiny: Path, tmp_path: Path, endian: gguf.GGUFEndian
) -> None:
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(path, "qwen3", endianess=endian)
    w.add_uint32("qwen3.block_count", 3)
    w.add_uint32("qwen3.embedding_length", 64)
    w.add_array("qwen3.attention.head_count", [4, 4, 8])
    w.add_array("qwen3.attention.head_count_kv", [2, 0, 4])
    w.add_float32("qwen3.rope.freq_base", 1e6)
    w.add_token_list(["a", "b", "c", "d"])
    w.add_tensor("token_embd.weight", np.zeros((4, 64), dtype=np.float16))
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((16, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for p in (tiny, path):
        h = est.read_gguf_header(p)
        scalars, tensors = _reader_view(p)
        for k, v in scalars.items():
            assert h.fields[k] == pytest.approx(v) if isinstance(v, float) else h.fields[k] == v, k
        assert [(t.name, t.shape, t.n_bytes) for t in h.tensors] == tensors
    info = read_gguf_info(path)
    assert (info.n_head, info.n_head_kv, info.n_vocab) == ((4, 4, 8), (2, 0, 4), 4)
    assert est.read_gguf_header(tiny).fields["tokenizer.ggml.tokens"] == est.GGUFArray(8, 385)


def test_truncated_tensor_data_is_input_error(tiny: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny.read_bytes()[:-1000])
    with pytest.raises(InputError, match=r"cut\.gguf.*truncated"):
        estimate_memory(cut, n_ctx=512)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_corrupt_headers_give_input_error_or_an_estimate(tiny: Path, tmp_path_factory, data) -> None:
    raw = bytearray(tiny.read_bytes())
    header_len = est.read_gguf_header(tiny).data_offset
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, header_len - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("fuzz") / "f.gguf"
    path.write_bytes(bytes(raw))
    try:
        e = estimate_memory(path, n_ctx=512)
    except InputError as exc:
        assert "f.gguf" in str(exc)
    else:
        assert e.total_mib() > 0


def test_bad_parameters_are_input_errors(tiny: Path) -> None:
    with pytest.raises(InputError, match="n_ctx"):
        estimate_memory(tiny, n_ctx=-1)
    with pytest.raises(InputError, match="n_batch"):
        estimate_memory(tiny, n_ctx=512, n_ubatch=0)
    with pytest.raises(InputError, match="kv_type_bytes"):
        estimate_memory(tiny, n_ctx=512, kv_type_bytes=0)


def test_compute_buffer_is_dominated_by_logits_for_large_vocab() -> None:
    # Qwen2.5-7B at 4k: llama.cpp reports a CPU compute buffer of about 300 MiB, mostly the
    # n_vocab x n_ubatch f32 logits (151936 x 512 x 4 = 297 MiB).
    parts = est.compute_buffer_parts(
        n_ctx=4096, n_ubatch=512, n_embd=3584, n_head=28, key_length=128, value_length=128, n_ff=18944,
        n_vocab=151936,
    )  # fmt: skip
    assert parts.output >= 151936 * 512 * 4
    assert 290 * MIB < parts.total < 800 * MIB


# --- the command -------------------------------------------------------------------------------------


def test_cli_tiny_and_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m" / "tiny.gguf"
    assert main(["model", "tiny", "--out", str(out), "--seed", "0"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{_sha(out)}  {out}"
    assert main(["model", "tiny", "--out", str(out)]) == 0
    assert "unchanged" in capsys.readouterr().err
    assert main(["model", "estimate", str(out)]) == 0
    assert "kv cache" in capsys.readouterr().out
    assert main(["model", "estimate", str(out), "--n-ctx", "4096", "--n-gpu-layers", "-1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_ctx"] == 4096 and d["offloaded_layers"] == 2 and d["gpu_mib"] > 0
    assert d["total_mib"] == pytest.approx(d["ram_mib"] + d["gpu_mib"])


def test_cli_bad_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(os.urandom(512))
    assert main(["model", "estimate", str(garbage)]) == 2
    assert "garbage.gguf" in capsys.readouterr().err
    assert main(["model", "estimate", str(tmp_path / "missing.gguf")]) == 2
    assert "missing.gguf" in capsys.readouterr().err
    assert main(["model", "tiny", "--out", str(tmp_path / "t.gguf"), "--seed", "-1"]) == 2
    assert main(["model"]) == 2


# --- real inference (needs llama-cpp-python) ---------------------------------------------------------


def test_tiny_model_generates_in_llama_cpp(tiny: Path) -> None:
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python not installed (pip install '.[node]')"
    )
    llm = llama_cpp.Llama(model_path=str(tiny), n_ctx=2048, n_threads=2, seed=0, verbose=False)
    text = "hello world, the jar: héllo ☃\n"  # words, single characters and byte fallback
    toks = llm.tokenize(text.encode())
    assert toks[0] == llm.token_bos() == 1
    assert llm.detokenize(toks).decode() == text
    generated = []
    for tok in llm.generate(toks, temp=0.8):
        generated.append(tok)
        if len(generated) == 64:
            break
    assert len(generated) == 64 and all(0 <= t < llm.n_vocab() for t in generated)
    out = llm.create_completion("hello world", max_tokens=16, seed=0, logit_bias={llm.token_eos(): -1e9})
    assert out["usage"]["completion_tokens"] >= 16  # may run on to finish a multi-byte character


def test_measure_tiny_model(tiny: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install '.[node]')")
    from runner.modelfile.measure import measure

    m = measure(tiny, n_ctx=512, tokens=16, n_threads=2)
    assert m.probe["generated_tokens"] == 16
    assert m.buffers_mib["CPU KV"] == pytest.approx(m.estimate.kv_cache_mib, abs=0.01)  # log has 2 decimals
    assert m.buffers_mib["CPU compute"] <= m.estimate.compute_mib
    assert 0 < m.run_increase_mib < m.estimate.total_mib()


def test_parse_llama_cpp_buffer_log() -> None:
    from runner.modelfile.measure import parse_buffer_sizes

    log = """load_tensors:   CPU_Mapped model buffer size =   265.15 MiB
load_tensors:   CPU_REPACK model buffer size =   264.98 MiB
llama_kv_cache:        CPU KV buffer size =    24.00 MiB
llama_context:  CUDA0 compute buffer size =   300.25 MiB
llama_context:  CUDA_Host compute buffer size =     5.76 MiB
"""
    assert parse_buffer_sizes(log) == {
        "CPU_Mapped model": 265.15,
        "CPU_REPACK model": 264.98,
        "CPU KV": 24.0,
        "CUDA0 compute": 300.25,
        "CUDA_Host compute": 5.76,
    }


@pytest.mark.parametrize("block", [8, 9, 13, 64])
def test_string_arrays_are_skipped_across_block_edges(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """The tokenizer's strings are walked in blocks; lengths that straddle a block edge change nothing."""
    whole = est.read_gguf_header(tiny)
    monkeypatch.setattr(est, "_BLOCK", block)
    small = est.read_gguf_header(tiny)
    assert (small.fields, small.tensors, small.data_offset) == (
        whole.fields,
        whole.tensors,
        whole.data_offset,
    )
