"""The benchmark CLI on tiny shapes: it runs, checks backends against eager and writes valid JSON and a plot."""

import importlib
import importlib.util
import json
import pathlib
import re

import pytest
import torch

from stylegan_ops import bench

TINY = {
    ("cpu", "noise_adain_lrelu"): [(2, 3, 8, 8)],
    ("cpu", "upsample_conv2d"): [(2, 4, 3, 6, 6)],
    ("cpu", "generator"): [(1, 8)],
}
RECORD_KEYS = {"op", "backend", "dtype", "shape", "direction", "median_ms", "gpu_ms", "speedup_vs_eager", "max_rel_err",
               "peak_mem_bytes", "saved_bytes"}


def test_quick_run_writes_json_and_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "QUICK_SHAPES", TINY)
    json_path, plot_path = tmp_path / "out.json", tmp_path / "out.png"
    assert bench.main(["--quick", "--device", "cpu", "--reps", "1", "--json", str(json_path),
                       "--plot", str(plot_path)]) == 0
    result = json.loads(json_path.read_text())
    assert {"device", "torch", "triton", "triton_autotune", "cuda", "date", "records"} <= set(result)
    assert result["triton_autotune"] is False and result["triton_configs"] == []  # CPU: the interpreter never autotunes
    assert result["device"] == "cpu"
    records = result["records"]
    ran = {(r["op"], r["backend"], r["direction"]) for r in records}
    for op in ("noise_adain_lrelu", "upsample_conv2d", "generator"):
        for direction in ("fwd", "fwd+bwd"):
            assert {(op, "eager", direction), (op, "compile", direction)} <= ran
            assert ((op, "native+compile", direction) in ran) == (
                op == "generator" and bench.available(op, "native", "cpu") is None)
            assert (op, "triton+compile", direction) not in ran  # no Triton timings on CPU (the interpreter)
            if "native" in bench.IMPLEMENTED_BACKENDS.get(op, ("native",)) and bench.available(op, "native", "cpu") is None:
                assert (op, "native", direction) in ran
    for record in records:
        assert RECORD_KEYS <= set(record)
        assert record["median_ms"] > 0
        assert record["max_rel_err"] < 1e-3, record  # every backend agrees with eager
        if record["backend"] == "eager":
            assert record["max_rel_err"] == 0 and record["speedup_vs_eager"] == pytest.approx(1.0)
        assert (record["saved_bytes"] is None) == (record["direction"] == "fwd")
        assert record["gpu_ms"] is None  # CUDA only
    saved = {(r["op"], r["backend"]): r["saved_bytes"] for r in records if r["direction"] == "fwd+bwd"}
    if ("upsample_conv2d", "native") in saved:  # eager keeps the upsampled x (2, 4, 12, 12), native nothing more
        assert saved["upsample_conv2d", "eager"] == 2 * 4 * 12 * 12 * 4 and saved["upsample_conv2d", "native"] == 0
    assert any("gbps" in r for r in records) and any("tflops" in r for r in records)
    assert plot_path.stat().st_size > 0
    out = capsys.readouterr().out
    assert "[1/" in out and "vs eager" in out


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit, match="unknown"):
        bench.main(["--ops", "noise,upsample"])
    with pytest.raises(SystemExit):  # argparse: exit status 2, the message on stderr
        bench.main(["--reps", "0"])
    assert "--reps: must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"--dtypes: unknown \['fp8'\]"):
        bench.main(["--dtypes", "bfloat16,fp8"])
    with pytest.raises(SystemExit, match=r"--directions: got 'bwd'"):
        bench.main(["--directions", "bwd"])
    with pytest.raises(SystemExit, match=r"--backends: got 'eager,cuda'"):
        bench.main(["--backends", "eager,cuda"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            bench.main(["--device", "cuda"])


def test_a_failing_backend_is_reported_and_the_others_still_timed(tmp_path, monkeypatch, capsys):
    # On a lent GPU a kernel that fails to compile or launch must not cost the run its other numbers.
    monkeypatch.setattr(bench, "QUICK_SHAPES", TINY)
    op_function = bench._op_function

    def failing_native(op, backend, device):
        if backend != "native":
            return op_function(op, backend, device)

        def fail(*args):
            raise RuntimeError("kernel launch failed")
        return fail

    monkeypatch.setattr(bench, "_op_function", failing_native)
    json_path = tmp_path / "out.json"
    assert bench.main(["--quick", "--device", "cpu", "--ops", "noise_adain_lrelu", "--reps", "1",
                       "--json", str(json_path)]) == 1
    result = json.loads(json_path.read_text())
    assert {(r["backend"], r["direction"]) for r in result["records"]} == {
        (backend, direction) for backend in ("eager", "compile") for direction in ("fwd", "fwd+bwd")}
    assert [(f["backend"], f["direction"], f["error"]) for f in result["failures"]] == [
        ("native", direction, "RuntimeError: kernel launch failed") for direction in ("fwd", "fwd+bwd")]
    out = capsys.readouterr().out
    assert "native: FAILED RuntimeError: kernel launch failed" in out
    assert "FAILED noise_adain_lrelu (2, 3, 8, 8) float32 fwd+bwd native: RuntimeError: kernel launch failed" in out
    assert "- noise_adain_lrelu (2, 3, 8, 8) float32 fwd native: RuntimeError" in _results_table().table(json_path)


def test_dtypes_directions_and_backends_choose_what_is_timed(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_SHAPES", TINY)
    json_path = tmp_path / "out.json"
    assert bench.main(["--quick", "--device", "cpu", "--ops", "noise_adain_lrelu", "--dtypes", "bfloat16",
                       "--directions", "fwd+bwd", "--backends", "native, eager", "--reps", "1",
                       "--json", str(json_path)]) == 0
    records = json.loads(json_path.read_text())["records"]
    assert {(r["dtype"], r["direction"], r["backend"]) for r in records} == {
        ("bfloat16", "fwd+bwd", backend) for backend in ("eager", "native")}


def test_merge_combines_runs_of_one_device(tmp_path, capsys):
    record = dict(op="upsample_conv2d", backend="eager", dtype="float32", shape=[1, 2, 3, 4, 4], direction="fwd",
                  median_ms=1.0, speedup_vs_eager=1.0, max_rel_err=0.0, peak_mem_bytes=0)
    parts = []
    # Part 1 times upsample_conv2d's eager twice (as two runs of one case would, each with eager as
    # its reference) and its native once.
    for k, (op, backends) in enumerate((("noise_adain_lrelu", ["eager"]),
                                        ("upsample_conv2d", ["eager", "native", "eager"]))):
        part = tmp_path / f"{op}.json"
        configs = [{"kernel": "_forward_kernel", "config": f"BLOCK_M: {64 * (m + 1)}"} for m in range(k + 1)]
        records = [{**record, "op": op, "backend": backend, "median_ms": float(m + 1)}
                   for m, backend in enumerate(backends)]
        part.write_text(json.dumps({"device": "GPU X", "torch": "2.x", "triton_configs": configs,
                                    "records": records}))
        parts.append(str(part))
    merged_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    assert bench.main(["--merge", *parts, str(tmp_path / "never_written.json"), "--json", str(merged_path),
                       "--plot", str(plot_path)]) == 0
    merged = json.loads(merged_path.read_text())
    assert merged["device"] == "GPU X" and [(r["op"], r["backend"], r["median_ms"]) for r in merged["records"]] == [
        ("noise_adain_lrelu", "eager", 1.0), ("upsample_conv2d", "eager", 1.0), ("upsample_conv2d", "native", 2.0)]
    # The autotuner's choices of every run, each once: part 1's first is part 0's.
    assert [c["config"] for c in merged["triton_configs"]] == ["BLOCK_M: 64", "BLOCK_M: 128"]
    assert plot_path.stat().st_size > 0
    out = capsys.readouterr().out
    assert "never_written.json does not exist" in out
    assert "eager upsample_conv2d (1, 2, 3, 4, 4) float32 fwd was timed by an earlier run too" in out
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"device": "GPU Y", "torch": "2.x", "records": []}))
    with pytest.raises(SystemExit, match="different devices"):
        bench.main(["--merge", parts[0], str(other)])


@pytest.mark.parametrize("op", ["noise_adain_lrelu", "upsample_conv2d"])
def test_op_cases_draw_the_same_inputs_in_every_run(op):
    """Errors against eager and speeds compare across runs only on the same inputs (an fp32
    backend's gradient can differ from eager's by 1e-3 where an element of z lies within rounding
    of the LeakyReLU's kink: whichever inputs show it should show it every time)."""
    shape = TINY[("cpu", op)][0]
    case = bench.CASE_BUILDERS[op]
    first = case(shape, torch.float32, "cpu").make("eager")[1]
    torch.randn(3)  # whatever ran in between
    second = case(shape, torch.float32, "cpu").make("eager")[1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_grad_output_takes_the_layout_of_y():
    """A channels_last model's next layer hands back a channels_last dy; the values stay those of
    the NCHW draw, so errors compare across layouts."""
    y = torch.empty(2, 3, 4, 5)
    dy = bench._grad_output(y.contiguous(memory_format=torch.channels_last))
    assert dy.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(dy, bench._grad_output(y))


def test_backends_of_a_case_are_timed_in_turns():
    calls = []
    steps = [lambda: calls.append("eager"), lambda: calls.append("native")]
    medians = bench._medians_ms(steps, "cpu", reps=3, warmup=1)
    assert calls == ["eager", "native"] * 4  # one warm-up turn, then three timed turns
    assert len(medians) == 2 and all(ms >= 0 for ms in medians)


def test_generator_backends_stay_themselves_when_timed_in_turns(monkeypatch):
    native_calls = []
    for op in ("noise_adain_lrelu", "upsample_conv2d"):
        module = importlib.import_module(f"stylegan_ops.ops.{op}")  # the package attribute is the function
        native = module.IMPLEMENTATIONS["native"]
        monkeypatch.setitem(module.IMPLEMENTATIONS, "native",
                            lambda *args, native=native: native_calls.append(1) or native(*args))
    case = bench.generator_case((1, 8), torch.float32, "cpu")
    eager_fn, args, _, eager_parameters = case.make("eager")
    native_fn, _, _, native_parameters = case.make("native")  # made after eager's, as run() does
    assert all(e is not n and torch.equal(e, n) for e, n in zip(eager_parameters, native_parameters, strict=True))
    eager_fn(*args)
    assert native_calls == []
    native_fn(*args)
    assert native_calls


def _results_table():
    """benchmarks/results_table.py, a script outside the package."""
    spec = importlib.util.spec_from_file_location("results_table", "benchmarks/results_table.py")
    results_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_table)
    return results_table


def test_results_table_reports_per_shape_and_geomean_speedups(tmp_path):
    results_table = _results_table()
    record = dict(op="upsample_conv2d", dtype="float32", direction="fwd")
    records = [{**record, "shape": shape, "backend": backend, "median_ms": ms}
               for shape, eager_ms, native_ms in (([1], 4.0, 2.0), ([2], 16.0, 2.0))
               for backend, ms in (("eager", eager_ms), ("native", native_ms))]
    records.append({**record, "shape": [3], "backend": "eager", "median_ms": 1.0})  # native not timed there
    records += [{**record, "direction": "fwd+bwd", "shape": [1], "backend": backend, "median_ms": 1.0,
                 "saved_bytes": mib * 2**20} for backend, mib in (("eager", 8), ("native", 2))]
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"device": "cpu", "torch": "2.x", "triton": None, "cuda": None,
                                "date": "2026-11-24T00:00:00", "records": records}))
    text = results_table.table(path)
    assert "| upsample_conv2d | (1,) | float32 | fwd | 4.000 | 2.000 | 2.00x |" in text
    assert "| upsample_conv2d | float32 | fwd | 3 | 4.00x (2 of 3 shapes) |" in text  # sqrt(2 * 8)
    assert "| op | shape | dtype | eager MiB saved for backward | native MiB saved for backward |" in text
    assert "| upsample_conv2d | (1,) | float32 | 8.0 | 2.0 (0.25x) |" in text
    assert "peak" not in text and "GPU ms" not in text  # neither measured on CPU


def test_results_table_adds_gpu_times_where_measured(tmp_path):
    record = dict(op="noise_adain_lrelu", dtype="bfloat16", direction="fwd", shape=[8, 512, 16, 16])
    records = [{**record, "backend": backend, "median_ms": median_ms, "gpu_ms": gpu_ms}
               for backend, median_ms, gpu_ms in (("eager", 0.2, 0.05), ("native", 0.09, 0.01))]
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"device": "NVIDIA H200", "torch": "2.x", "triton": "3.x", "cuda": "13.0",
                                "date": "2026-11-26T00:00:00", "records": records}))
    text = _results_table().table(path)
    assert "| noise_adain_lrelu | (8, 512, 16, 16) | bfloat16 | fwd | 0.200 | 0.090 | 2.22x |" in text
    assert "| op | shape | dtype | direction | eager GPU ms | native GPU ms | native vs eager |" in text
    assert "| noise_adain_lrelu | (8, 512, 16, 16) | bfloat16 | fwd | 0.050 | 0.010 | 5.00x |" in text


def test_results_table_compares_graphed_fused_backends_with_eager_in_a_graph(tmp_path):
    record = dict(op="generator", dtype="bfloat16", direction="fwd+bwd", shape=[8, 256])
    records = [{**record, "backend": backend, "median_ms": median_ms}
               for backend, median_ms in (("eager", 12.0), ("eager+graph", 8.0), ("native+graph", 2.0))]
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"device": "NVIDIA H200", "torch": "2.x", "triton": "3.x", "cuda": "13.0",
                                "date": "2026-11-28T00:00:00", "records": records}))
    text = _results_table().table(path)
    assert ("| op | shape | dtype | direction | eager ms | eager+graph ms | native+graph ms | eager+graph vs eager "
            "| eager+graph vs compile | native+graph vs eager | native+graph vs compile | native+graph vs eager+graph |"
            ) in text
    assert "| generator | (8, 256) | bfloat16 | fwd+bwd | 12.000 | 8.000 | 2.000 | 1.50x |  | 6.00x |  | 4.00x |" in text


# The benchmark tables of the documents are results_table.py's output for the committed results
# each document names beside them: none typed or edited by hand, none left stale by a change to the
# JSON or to the tables' form; and every committed result has its tables in one of them.
DOCUMENTS = ("README.md", "benchmarks/results/HISTORY.md")
TABLE_COMMAND = r"results_table\.py\s+(benchmarks/results/\S+?\.json)"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_documented_benchmark_tables_are_generated_from_committed_results(document):
    text = pathlib.Path(document).read_text()
    sources = sorted(set(re.findall(TABLE_COMMAND, text)))
    assert sources, f"{document} names no results JSON"
    table = _results_table().table
    generated = {block.strip() for path in sources for block in table(path).split("\n\n") if block.strip()}
    missing = [block.splitlines()[0] for block in generated if block not in text]
    assert not missing, f"{document} lacks these blocks of results_table.py's output: {missing}"
    # results_table.py's tables open with these headers; the documents' other tables do not.
    tables = {block.strip() for block in re.split(r"\n\s*\n", text)
              if block.startswith(("| op | shape |", "| op | dtype |"))}
    assert len(tables) > len(sources) and not tables - generated, \
        f"{document} has benchmark tables that no JSON it names generates"


def test_every_committed_result_has_its_tables_in_a_document():
    named = {path for document in DOCUMENTS for path in re.findall(TABLE_COMMAND, pathlib.Path(document).read_text())}
    committed = {str(path) for path in pathlib.Path("benchmarks/results").glob("*.json")
                 if not path.name.endswith("-ceilings.json")}  # the device's ceilings, no benchmark records
    assert committed == named


def test_compiled_and_graphed_backends_time_the_generator_only():
    for backend in ("native+compile", "triton+compile", "eager+graph", "native+graph", "triton+graph"):
        for op in ("noise_adain_lrelu", "upsample_conv2d"):
            assert bench.available(op, backend, "cuda") == "timed for the whole generator only"
    assert bench.available("generator", "triton+compile", "cpu") == bench.available("generator", "triton", "cpu")
    for backend in ("eager+graph", "native+graph"):
        assert bench.available("generator", backend, "cpu") == "CUDA graphs need a CUDA device"


def test_graphed_backends_time_replays_and_report_the_capture(monkeypatch):
    """run() with the CUDA graph backends, on CPU: a stand-in capture, whose replay reruns the step
    into the captured outputs, reports a peak of 1234 bytes. The graphed records carry the capture's
    peak, the bytes the un-graphed step saves for backward (a replay saves none) and the replay's
    outputs checked against eager; every timed call of a graphed backend is a replay."""
    replays = []

    def stand_in_capture(step):
        outputs = step()

        def replay():
            replays.append(1)
            for captured, new in zip(outputs, step(), strict=True):
                captured.copy_(new)
            return outputs

        return replay, 1234

    available = bench.available
    monkeypatch.setattr(bench, "_graphed", stand_in_capture)
    monkeypatch.setattr(bench, "available",
                        lambda op, backend, device: available(op, bench.GRAPHED.get(backend, backend), device))
    backends = ("eager", "native", "eager+graph", "native+graph")
    case = bench.generator_case((1, 8), torch.float32, "cpu")
    if bench.available("generator", "native", "cpu") is not None:
        backends = ("eager", "eager+graph")
    records, failures = bench.run([case], "cpu", backends=backends, directions=("fwd+bwd",), reps=2, warmup=1,
                                  log=lambda line: None)
    assert failures == []
    by_backend = {r["backend"]: r for r in records}
    assert set(by_backend) == set(backends)
    for backend in backends:
        graphed = backend.endswith("+graph")
        record, ungraphed = by_backend[backend], by_backend[backend.removesuffix("+graph")]
        assert record["peak_mem_bytes"] == (1234 if graphed else None)  # CPU: no peak measured un-graphed
        assert record["saved_bytes"] == ungraphed["saved_bytes"] > 0
        assert record["max_rel_err"] < 1e-5
    # Each graphed backend: the first replay (checked against eager), warm-up 1, reps 2.
    assert len(replays) == 4 * sum(b.endswith("+graph") for b in backends)
