"""`python -m runner.node bench` on the tiny model: real llama.cpp, the method's counts and every provenance
field present (a value the machine cannot give is `unavailable: <why>`, never missing or empty)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runner.node.bench import METRICS
from tests.conftest import filled

ROOT = Path(__file__).resolve().parents[2]


def bench(model: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.node", "bench", "--model", str(model), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_bench_measures_by_the_method_with_every_provenance_field(tiny_model: Path, tmp_path: Path) -> None:
    record = tmp_path / "installed.txt"
    record.write_text("key x86_64-cpu-cp311\npin llama-cpp-python==0.3.36\n")
    proc = bench(tiny_model, "--reps", "2", "--prompt-tokens", "16", "--gen-tokens", "8",
                 "--install-record", str(record))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == {"prompt_tokens": 16, "gen_tokens": 8, "reps": 2, "warmup": 1, "n_threads": 0,
                             "n_gpu_layers": 0, "n_ctx": 32}  # fmt: skip
    assert len(out["reps"]) == 2
    for rep in out["reps"]:
        assert set(rep) == set(METRICS) and all(v > 0 for v in rep.values()), rep
    for metric in METRICS:
        s = out["summary"][metric]
        assert s["min"] <= s["median"] <= s["max"], (metric, s)
    assert out["build"]["wheel_key"] == "x86_64-cpu-cp311"
    assert out["model"]["file"] == tiny_model.name and len(out["model"]["sha256"]) == 64
    assert out["model"]["quantisation"] == "F16", out["model"]
    assert out["build"]["llama_cpp_python"] and "CPU" in out["build"]["system_info"]
    assert out["peak_rss_mib"] > 0
    for section in ("method", "model", "build", "board"):
        assert filled(out[section]), (section, out[section])
    for key in ("temperatures_before", "temperatures_after", "cgroup_peak_mib"):
        assert filled(out[key]), (key, out[key])


def test_bench_of_a_missing_model_is_bad_input(tmp_path: Path) -> None:
    proc = bench(tmp_path / "nope.gguf")
    assert proc.returncode == 2, proc
    assert "nope.gguf: no such model file" in proc.stderr
    assert proc.stdout == ""
