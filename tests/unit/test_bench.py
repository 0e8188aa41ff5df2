"""runner bench: the method's pure parts, the provenance readers on recorded /proc and /sys trees, the
task results into stored runs, the results database, the tables and the CLI's bad input."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from runner.bench import parse, store, table
from runner.cli import main
from runner.errors import InputError
from runner.node import bench, provenance

# --- the method ----------------------------------------------------------------------------------------


def test_fixed_prompt_is_exactly_n_tokens_bos_first_then_the_text_repeated() -> None:
    assert bench.fixed_prompt([5, 6, 7], 8, bos=1) == [1, 5, 6, 7, 5, 6, 7, 5]
    assert bench.fixed_prompt([1, 5, 6], 4, bos=1) == [1, 5, 6, 5]  # a BOS in the text is not repeated
    assert bench.fixed_prompt([5, 6], 3, bos=None) == [5, 6, 5]
    assert bench.fixed_prompt([5, 6], 1, bos=-1) == [5]  # -1: the model has no BOS
    with pytest.raises(ValueError, match="at least one token"):
        bench.fixed_prompt([5], 0, bos=1)
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        bench.fixed_prompt([1], 4, bos=1)


def test_rep_metrics_and_summary() -> None:
    method = bench.Method(prompt_tokens=64, gen_tokens=32)
    rep = bench.rep_metrics(load_s=0.5, pp_s=0.25, first_s=0.05, gen_s=2.0, method=method)
    assert rep == {"load_s": 0.5, "pp_tps": 256.0, "tg_tps": 16.0, "ttft_s": pytest.approx(0.3)}
    summary = bench.summarise([{**rep, "tg_tps": v} for v in (10.0, 30.0, 20.0)])
    assert summary["tg_tps"] == {"median": 20.0, "min": 10.0, "max": 30.0}
    assert method.n_ctx == 104


def test_quantisation_names_llama_cpp_file_types() -> None:
    pytest.importorskip("llama_cpp")
    assert bench.quantisation(15) == "Q4_K_M"
    assert bench.quantisation("1") == "F16"
    assert bench.quantisation(9999).startswith("unavailable: general.file_type 9999")


# --- provenance on recorded trees ----------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_cpu_model_x86_pi_and_bare_arm(tmp_path: Path) -> None:
    x86 = write(tmp_path / "x86", {"cpuinfo": "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"})
    assert provenance.cpu_model(x86) == "AMD EPYC 7B13"
    pi = write(tmp_path / "pi", {"cpuinfo": "processor\t: 0\nCPU part\t: 0xd0b\n",
                                 "device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00"})  # fmt: skip
    assert provenance.cpu_model(pi) == "Raspberry Pi 5 Model B Rev 1.0"
    arm = write(tmp_path / "arm", {"cpuinfo": "CPU implementer\t: 0x41\nCPU part\t: 0xd42\n"})
    assert provenance.cpu_model(arm) == "ARM CPU part 0xd42 (implementer 0x41)"
    assert provenance.cpu_model(tmp_path / "none").startswith("unavailable: ")


def test_clocks_and_temperatures_of_a_jetson_like_tree(tmp_path: Path) -> None:
    sys_dir = write(tmp_path, {
        "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "2201600\n",
        "devices/system/cpu/cpu1/cpufreq/scaling_cur_freq": "1190400\n",
        "devices/system/cpu/cpu0/cpufreq/scaling_governor": "schedutil\n",
        "class/devfreq/17000000.gpu/cur_freq": "1300500000\n",
        "class/thermal/thermal_zone0/type": "cpu-thermal\n",
        "class/thermal/thermal_zone0/temp": "45500\n",
        "class/thermal/thermal_zone1/type": "gpu-thermal\n",
        "class/thermal/thermal_zone1/temp": "-1000\n",
    })  # fmt: skip
    assert provenance.cpu_clocks_mhz(sys_dir) == {"min_mhz": 1190, "max_mhz": 2201, "cpus": 2,
                                                  "governor": "schedutil"}  # fmt: skip
    assert provenance.gpu_clock_mhz(sys_dir) == {"17000000.gpu": 1300}
    assert provenance.temperatures_c(sys_dir) == {"cpu-thermal": 45.5, "gpu-thermal": -1.0}
    empty = tmp_path / "empty"
    for reader in (provenance.cpu_clocks_mhz, provenance.gpu_clock_mhz, provenance.temperatures_c):
        assert str(reader(empty)).startswith("unavailable: "), reader


def test_wheel_key_from_the_install_record(tmp_path: Path) -> None:
    record = write(tmp_path, {"installed.txt": "key aarch64-a76-cp311\npin numpy==2.4.6\n"}) / "installed.txt"
    assert provenance.wheel_key(record) == "aarch64-a76-cp311"
    assert provenance.wheel_key(tmp_path / "missing").startswith("unavailable: no install record")


def test_model_sha256_trusts_only_a_sidecar_that_describes_this_file(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF model bytes")
    real = hashlib.sha256(b"GGUF model bytes").hexdigest()
    assert provenance.model_sha256(model) == real  # no sidecar: read
    st = model.stat()
    sidecar = tmp_path / ".m.gguf.sha256"
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    sidecar.write_text(json.dumps({**ident, "sha256": "a" * 64}))
    assert provenance.model_sha256(model) == "a" * 64  # the sidecar describes it: trusted
    sidecar.write_text(json.dumps({**ident, "size": 1, "sha256": "a" * 64}))
    assert provenance.model_sha256(model) == real  # another file's sidecar: read


# --- task results, the database, the tables ------------------------------------------------------------


def measurement(tg: float, quant: str = "Q4_K_M", threads: int = 4) -> dict[str, Any]:
    rep = {"load_s": 0.5, "pp_tps": 100.0, "tg_tps": tg, "ttft_s": 0.2}
    return {
        "method": {
            "prompt_tokens": 64,
            "gen_tokens": 32,
            "reps": 2,
            "warmup": 1,
            "n_threads": 0,
            "n_gpu_layers": 0,
            "n_ctx": 104,
        },
        "model": {"file": "g.gguf", "path": "/m/g.gguf", "sha256": "b" * 64, "quantisation": quant},
        "build": {"llama_cpp_python": "0.3.36", "threads": threads, "wheel_key": "aarch64-a76-cp311"},
        "board": {"cpu_model": "Raspberry Pi 5", "power_mode": "unavailable: no nvpmodel (not a Jetson)"},
        "reps": [rep, {**rep, "tg_tps": tg + 2}],
        "summary": bench.summarise([rep, {**rep, "tg_tps": tg + 2}]),
        "peak_rss_mib": 300.0,
    }


def item(model: str, rc: int = 0, stdout: str = "", stderr: str = "") -> dict[str, Any]:
    return {"item": model, "rc": rc, "stdout": stdout, "stderr": stderr}


def test_task_results_into_results_and_failures() -> None:
    good = json.dumps(measurement(10.0))
    missing = json.dumps({k: v for k, v in measurement(10.0).items() if k != "summary"})
    captured = {
        "rpi1": {
            "results": [item("gemma", stdout=f"noise\n{good}"), item("tiny", rc=137, stderr="a\nKilled\n")]
        },
        "rpi2": {
            "results": [
                item("gemma", stdout="not json"),
                item("tiny", stdout=missing),
                {"item": "x", "skipped": True},
            ]
        },
    }
    results, failures = parse.from_task(captured, {"rpi1": "rpi", "rpi2": "rpi"})
    assert [(r.node, r.model, r.node_kind) for r in results] == [("rpi1", "gemma", "rpi")]
    assert failures == {
        "rpi1/tiny": "exit 137: a | Killed",
        "rpi2/gemma": "its output is not the bench JSON",
        "rpi2/tiny": "the bench JSON lacks summary",
    }


def test_store_keeps_every_run_whole(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "bench.sqlite3")
    first = store.add_run(conn, "t0", "t1", "inv", {"commit": "abc"},
                          [store.Result("rpi1", "gemma", "rpi", measurement(10.0))])  # fmt: skip
    second = store.add_run(conn, "t2", "t3", "inv", {"commit": "def"},
                           [store.Result("rpi1", "gemma", "rpi", measurement(12.0))])  # fmt: skip
    assert store.run_ids(conn) == [first, second]
    run = store.load_run(conn, first)
    assert run.controller == {"commit": "abc"} and run.results[0].median("tg_tps") == 11.0
    assert conn.execute("SELECT COUNT(*) FROM reps WHERE run_id = ?", (first,)).fetchone()[0] == 2
    broken = measurement(10.0)
    del broken["summary"]
    with pytest.raises(KeyError):
        store.add_run(conn, "t4", "t5", "inv", {}, [store.Result("rpi1", "gemma", "rpi", measurement(9.0)),
                                                    store.Result("rpi2", "gemma", "rpi", broken)])  # fmt: skip
    assert store.run_ids(conn) == [first, second]  # the failed run left nothing, not half a run
    with pytest.raises(InputError, match="bench run 99: no such run"):
        store.load_run(conn, 99)


def test_run_table_and_comparison() -> None:
    a = store.Run(1, "t0", "t1", "inv", {}, (store.Result("rpi1", "gemma", "rpi", measurement(10.0)),))
    b = store.Run(2, "t2", "t3", "inv", {}, (store.Result("rpi1", "gemma", "rpi", measurement(12.0, threads=2)),
                                              store.Result("rpi2", "gemma", "rpi", measurement(5.0))))  # fmt: skip
    header, rows = table.run_rows(b)
    assert header[:6] == ["node", "kind", "model", "quant", "threads", "gpu layers"]
    assert rows[0][:6] == ["rpi1", "rpi", "gemma", "Q4_K_M", "2", "0"]
    assert rows[0][header.index("gen tok/s")] == "13.0 (12.0-14.0)"
    assert rows[0][header.index("TTFT ms")] == "200 (200-200)"
    header, rows = table.compare_rows(a, b)
    by_metric = {r[2]: r for r in rows}
    assert len(rows) == len(table.METRICS)  # rpi2 was measured in one run only
    assert by_metric["gen tok/s"][3:] == ["11.0", "13.0", "+18.2%"]
    assert table.change(0.2, 0.4, higher_is_better=False) == "-100.0%"  # slower TTFT is worse
    assert table.provenance_diff(a.results[0], b.results[0]) == ["build.threads: 4 -> 2"]


# --- the CLI: bad input exits 2 and writes nothing -----------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give at least one --model"),
        (["--model", "nope"], "--model nope: unknown model (catalog: tiny"),
        (["--model", "tiny", "--nodes", "rpi1,ghost"], "--nodes: unknown node(s) ghost"),
        (["--compare"], "no bench run stored yet"),
        (["--list"], "no bench run stored yet"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    results = project / "results"
    assert main(["bench", "-i", "inventory", "--results", str(results), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not results.exists()


def test_compare_needs_two_runs(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = project / "results"
    conn = store.connect(results / "bench.sqlite3")
    store.add_run(conn, "t0", "t1", "inv", {}, [store.Result("rpi1", "gemma", "rpi", measurement(10.0))])
    conn.close()
    assert main(["bench", "--results", str(results), "--compare"]) == 2
    assert "1 run(s) stored, two are needed" in capsys.readouterr().err
    assert main(["bench", "--results", str(results), "--compare", "1"]) == 2
    assert main(["bench", "--results", str(results), "--compare", "1", "7"]) == 2
    assert "bench run 7: no such run (runs: 1)" in capsys.readouterr().err
    assert main(["bench", "--results", str(results), "--list"]) == 0
    assert "rpi1" in capsys.readouterr().out
    assert sqlite3.connect(results / "bench.sqlite3").execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_report_draws_each_metric_for_every_run_and_names_the_provenance(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from runner.bench import report

    a = store.Run(1, "t0", "t1", "inv", {"commit": "abc"},
                  (store.Result("rpi1", "gemma", "rpi", measurement(10.0)),))  # fmt: skip
    b = store.Run(2, "t2", "t3", "inv", {"commit": "def"},
                  (store.Result("rpi1", "gemma", "rpi", measurement(12.0)),))  # fmt: skip
    assert report.series([a, b], "ttft_s") == {
        "rpi1/gemma": [("run 1", 200.0, 200.0, 200.0), ("run 2", 200.0, 200.0, 200.0)]
    }
    path = report.write(tmp_path, [a, b])
    assert path == tmp_path / "bench" / "report.html"
    text = path.read_text()
    assert text.count("<svg") == len(table.METRICS)
    for title, _, _ in table.METRICS.values():
        assert f"{title} per node and model" in text
    assert "run 1" in text and "run 2" in text and "aarch64-a76-cp311" in text and "Raspberry Pi 5" in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # nothing fetched
