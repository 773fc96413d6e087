"""The one GPU call: every check that still says "not measured", in priority order, each
stage under its own time box, its results written under OUT as the stage ends (a cut-off
run keeps everything before the cut), a summary printed last.

    bash bench/gpu.sh                    # on the GPU machine (installs, then runs this)
    GPU_DRY_RUN=1 bash bench/gpu.sh      # anywhere: each stage on a tiny CPU case (CI)

GPU_BUDGET_S (default 480) is shared out among the stages by their weights; a stage that
ends early leaves its time to the ones after it. OUT (default bench/results/gpu-run)
receives at most eight files, as the device machine returns no more: env.txt,
tests.log, host.txt, bench.jsonl, bench.txt, train.txt, run.log and summary.txt.

Two helpers run beside the stages: the extension's JIT build for this GPU, from the
start, and, from the tests stage on (after env measured the copy bandwidth), the
benchmark cases run once untimed, so that torch.compile's disk caches hold what the
bench stage will compile (stopped when that stage starts, so nothing else runs on the
GPU while it is timed). Their last lines go to env.txt, their rows to the summary.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import fastpgan.ops  # noqa: F401  (registers every op)
from fastpgan.backend import OPS

ROOT = Path(__file__).resolve().parent.parent
DRY = os.environ.get("GPU_DRY_RUN") == "1"
BUDGET_S = float(os.environ.get("GPU_BUDGET_S", "480"))
OUT = Path(os.environ.get("OUT") or ROOT / "bench" / "results" / "gpu-run")
PY = sys.executable

REGISTRY_SUITES = ["tests/test_half_precision_references.py", "tests/test_nonfinite.py",
                   "tests/test_properties.py"]
"""The suites that iterate the op registry: every op's samples on CUDA."""
OTHER_GPU_TESTS = [
    "tests/test_nn.py", "tests/test_models.py", "tests/test_cuda.py",
    "tests/test_stylegan2.py::test_fused_path_matches_the_reference_with_r1s_double_backward",
    "tests/test_train_performance.py::test_trains_on_cuda_with_the_defaults",
    "tests/test_train_performance.py::test_cuda_graphs_replay_the_step_on_cuda_as_eager_steps_run",
    "tests/test_train_performance.py::test_fused_ops_train_channels_last_under_bf16_autocast"]


def op_tests() -> list[str]:
    """Every fused op forward, backward and double backward in every dtype and layout
    (each op's own test files, as its ``OpTests.gpu_tests`` declare them, and the
    registry-driven suites), the extension's CUDA path, the models and the trainer's GPU
    defaults: not the AOT compile (CI runs it) nor the CPU-only suites."""
    own = sorted({test for op in OPS.values() for test in op.tests.gpu_tests})
    return [*own, *REGISTRY_SUITES, *OTHER_GPU_TESTS]


BENCH_TARGETS = ("(test_bench_epilogue and bias_lrelu_pixel_norm and 16x512x64x64) or "
                 "test_bench_minibatch_stddev or test_bench_adain or "
                 "(test_bench_resample_conv and bfloat16) or "
                 "(test_bench_norm_act and (test_training_step or batch_64x256x32x32)) or "
                 "test_bench_augment")
"""One benchmark row per open performance target (bench/NOTES.md)."""
BENCH_FILES = ["bench/test_bench_epilogue.py", "bench/test_bench_minibatch_stddev.py",
               "bench/test_bench_adain.py", "bench/test_bench_resample_conv.py",
               "bench/test_bench_norm_act.py", "bench/test_bench_augment.py"]
"""The benchmark files in the order their targets were set: a stage cut off loses the last
(augment_bgc's rows, issue 34's, the newest)."""
TRAIN_RESOLUTIONS = ["4", "32", "128", "256", "512", "1024"]


@dataclass
class Stage:
    """One stage: its name, its share of the budget, the file it writes and its commands
    (each a list of arguments; run in turn, all inside the stage's time box)."""

    name: str
    weight: float
    output: str
    commands: Callable[[], list[list[str]]]
    summary: Callable[[str], str]


def last_match(pattern: str, text: str, default: str = "no result line") -> str:
    """The last line of ``text`` matching ``pattern``."""
    lines = [line for line in text.splitlines() if re.search(pattern, line)]
    return lines[-1].strip() if lines else default


def env_commands() -> list[list[str]]:
    show = ("import torch, triton, platform; print('python', platform.python_version(), "
            "'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', "
            "triton.__version__)")
    commands = [[PY, "-c", show]]
    if not DRY:
        commands += [["nvidia-smi"],
                     [PY, "-c", "import sys; sys.path.insert(0, 'bench'); "
                      "from benchutil import copy_bandwidth; "
                      "print(f'copy bandwidth {copy_bandwidth():.0f} GB/s')"]]
    # last: the doctor loads the extension, so it waits for the build started beside it
    return [*commands, [PY, "-m", "fastpgan.doctor"]]


def test_commands() -> list[list[str]]:
    # -v names each test as it ends, so a run cut off by its time box still lists failures
    pytest = [PY, "-m", "pytest", "-v", "-rfE", "-p", "no:cacheprovider"]
    if DRY:
        return [[*pytest, "tests/test_bias_act.py", "-k", "third_order"]]
    timeout = ["--timeout", "120"] if _has_plugin("pytest_timeout") else []
    return [[*pytest, "-n", "12", *timeout, *op_tests()]]


def tests_summary(text: str) -> str:
    """pytest's closing line, or the outcomes counted so far when the run was cut off."""
    closing = last_match(r"^=+ .*\b(passed|failed|error)", text, "")
    if closing:
        return closing.strip("= ")
    counts = {word: len(re.findall(rf"\b{word}\b", text)) for word in ("PASSED", "FAILED", "ERROR")}
    return "cut off: " + ", ".join(f"{n} {word.lower()}" for word, n in counts.items())


def host_commands() -> list[list[str]]:
    if DRY:
        return [[PY, "bench/host_costs.py", "--resolutions", "4", "8", "--small", "--calls", "20"]]
    return [[PY, "bench/host_costs.py", "--resolutions", "4", "64", "1024"]]


def bench_selection() -> list[str]:
    """The benchmark cases' pytest arguments, files in priority order."""
    if DRY:
        return ["bench/test_bench_epilogue.py", "-k", "fused and nchw"]
    return [*BENCH_FILES, "-k", BENCH_TARGETS]


def bench_commands() -> list[list[str]]:
    return [[PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-enable",
             "--benchmark-only", *bench_selection()],
            [PY, "bench/summarize.py", "--jsonl", str(OUT / "bench.jsonl")]]


VERDICT = re.compile(r"^(met|MISSED|incomplete) ", re.M)
"""bench/summarize.py's verdict lines on the open targets."""


def bench_summary(text: str) -> str:
    """Cases streamed, and how the open targets fared."""
    verdicts = [match.group(1) for match in VERDICT.finditer(text)]
    counts = ", ".join(f"{verdicts.count(v)} {v.lower()}" for v in ("met", "MISSED",
                                                                    "incomplete"))
    return f"{len(_lines(OUT / 'bench.jsonl'))} benchmark cases streamed; targets: {counts}"


def prewarm_command() -> list[str]:
    """The benchmark cases run once, untimed, beside the earlier stages: torch.compile's
    caches on disk (Inductor's graphs, Triton's kernels) then hold what each case
    compiles, and the bench stage's own compiles of the same graphs are cache hits."""
    return [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
            *bench_selection()]


def train_commands() -> list[list[str]]:
    if DRY:
        return [[PY, "bench/train_bench.py", "--resolution", "8", "--steps", "1",
                 "--warmup", "0", "--impls", "fused"],
                [PY, "bench/examples_speed.py", "--steps", "2"]]
    return [[PY, "bench/train_bench.py", "--resolution", "1024", "--resolutions",
             *TRAIN_RESOLUTIONS, "--steps", "10", "--warmup", "3",
             "--impls", "fused,reference,fused-graphs"],  # a cut loses the last
            # where the host bounds a step, torch.compile's own CUDA graphs of G, if time is left
            [PY, "bench/train_bench.py", "--resolution", "64", "--resolutions", "4", "64",
             "--steps", "10", "--warmup", "3",
             "--impls", "fused-graphs,compiled-G-reduce-overhead"],
            # the examples' GPU column (README), plain and fused, last: a cut loses it
            [PY, "bench/examples_speed.py", "--steps", "100"]]


def run_commands() -> list[list[str]]:
    folder = Path(tempfile.mkdtemp(prefix="fastpgan-gpu-run-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # its checkpoints are large
    _synthetic_images(folder / "images", 64)
    size = ["--resolution", "8", "--fade-kimg", "0.02", "--stable-kimg", "0.02",
            "--device", "cpu", "--batch", "4", "--latent-dim", "16", "--fmap-base", "64",
            "--fmap-max", "16"] if DRY else [
        "--resolution", "64", "--fade-kimg", "4", "--stable-kimg", "4", "--batch", "auto"]
    train = [PY, "-m", "fastpgan.cli.train", "--data", str(folder / "images"), "--out",
             str(folder / "run"), "--no-progress", "--swd-images", "0",
             "--checkpoint-kimg", "0.01" if DRY else "1", *size]
    # killed once it has a checkpoint (the GPU run 20 s later, mid-phase), then resumed
    kill = [PY, "bench/kill_after_checkpoint.py", str(folder / "run"), "0" if DRY else "20",
            "--"]
    return [[*kill, *train], [*train, "--resume", "latest"]]


def _synthetic_images(folder: Path, count: int) -> None:
    """Blurred random RGB blobs as PNGs, so the run reads a real image folder."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for i in range(count):
        (cy, cx), r = rng.uniform(16, 48, 2), rng.uniform(6, 20)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r ** 2)
        rgb = (255 * blob[..., None] * rng.uniform(0.3, 1, 3)).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{i:03d}.png")


def _has_plugin(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


STAGES = [
    Stage("env", 0.10, "env.txt", env_commands,
          lambda text: last_match(r"copy bandwidth|^python ", text)),
    Stage("tests", 0.27, "tests.log", test_commands, tests_summary),
    Stage("host", 0.08, "host.txt", host_commands,
          lambda text: last_match(r"^bias\+lrelu\s+fwd\+bwd", text)),
    Stage("bench", 0.26, "bench.txt", bench_commands, bench_summary),
    Stage("train", 0.19, "train.txt", train_commands,
          lambda text: "; ".join(re.findall(r"^projected.*$", text, re.M)) or "no result line"),
    Stage("run", 0.10, "run.log", run_commands,
          lambda text: ("killed after a checkpoint; " if "[killed after" in text else "")
          + "exits: " + " ".join(re.findall(r"\[exit (-?\d+)\]", text))),
]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def child_env() -> dict[str, str]:
    """This process's environment for a child, without the variables of a pytest that
    started this run (the dry-run test under xdist): pytest-benchmark would take the child
    for an xdist worker and disable itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def run_stage(stage: Stage, seconds: float) -> tuple[str, float]:
    """Runs the stage's commands into its file within ``seconds``; (status, elapsed)."""
    start, status = time.monotonic(), "ok"
    env = {**child_env(), "BENCH_JSONL": str(OUT / "bench.jsonl")}
    with open(OUT / stage.output, "a", encoding="utf-8") as log:
        for command in stage.commands():
            left = seconds - (time.monotonic() - start)
            if left <= 1:
                status = "time box spent"
                break
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)
            try:
                code = process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                status = "timed out"
                log.write(f"[stopped after its time box, {seconds:.0f} s]\n")
                break
            log.write(f"[exit {code}]\n")
            if code:
                status = f"exit {code}"
    return status, time.monotonic() - start


BUILD = ("import time; start = time.perf_counter(); "
         "from fastpgan.extension import extension_status, load_extension; load_extension(); "
         "status = extension_status(); "
         "print(f'extension build: {time.perf_counter() - start:.0f} s, CUDA: '"
         "f'{status.with_cuda}, error: {status.error}')")
"""The C++ extension's JIT build for this GPU, started first and timed in the background."""


class Background:
    """A helper process beside the stages (the extension's build, the compile caches'
    warm-up), its output in a temporary file until :meth:`stop` reports it."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.name, self.started = name, time.monotonic()
        self.log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (read in stop)
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT, env=child_env(),
                                        start_new_session=True)
        self.ended: float | None = None
        threading.Thread(target=self._note_the_end, daemon=True).start()
        self.row: dict | None = None

    def _note_the_end(self) -> None:
        self.process.wait()
        self.ended = time.monotonic()

    def stop(self, result_pattern: str) -> dict:
        """Kills the process if it still runs; its summary row (once, however often called)."""
        if self.row is None:
            if self.ended is None:  # poll() cannot tell: the waiting thread holds the lock
                with contextlib.suppress(ProcessLookupError):  # it may end meanwhile
                    os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
            status = {0: "ok", -signal.SIGKILL: "stopped"}.get(code, f"exit {code}")
            self.log.seek(0)
            text = self.log.read()
            self.row = {"stage": self.name, "status": status,
                        "seconds": round((self.ended or time.monotonic()) - self.started, 1),
                        "box_s": 0,
                        "result": last_match(result_pattern, text, text.strip()[-200:])}
            with open(OUT / "env.txt", "a", encoding="utf-8") as env_file:
                env_file.write(f"--- {self.name} ({status}), last lines:\n"
                               + "\n".join(text.splitlines()[-15:]) + "\n")
        return self.row


def main() -> int:
    """Runs every stage and prints the summary table; exit status 1 if any failed."""
    OUT.mkdir(parents=True, exist_ok=True)
    for stage in STAGES:
        (OUT / stage.output).unlink(missing_ok=True)
    (OUT / "bench.jsonl").unlink(missing_ok=True)
    build, warm = Background("ext", [PY, "-c", BUILD]), None
    started, rows = time.monotonic(), []
    weights_left = sum(stage.weight for stage in STAGES)
    for stage in STAGES:
        # the warm-up shares the GPU: it starts once env has measured the copy bandwidth
        # and is stopped before the bench stage times anything
        if stage.name == "tests":
            warm = Background("warm", prewarm_command())
        elif stage.name == "bench" and warm is not None:
            warm.stop(r"passed|failed|error")
        left = BUDGET_S - (time.monotonic() - started) - 5  # 5 s for the summary
        box = max(left * stage.weight / weights_left, 0.0)
        weights_left -= stage.weight
        status, elapsed = run_stage(stage, box) if box > 1 else ("no time left", 0.0)
        text = (OUT / stage.output).read_text() if (OUT / stage.output).exists() else ""
        rows.append({"stage": stage.name, "status": status, "seconds": round(elapsed, 1),
                     "box_s": round(box), "result": stage.summary(text)})
        print(json.dumps(rows[-1]), flush=True)
    rows.append(build.stop(r"extension build"))
    if warm is not None:
        rows.append(warm.stop(r"passed|failed|error"))
    lines = [f"gpu.sh {'dry run (CPU)' if DRY else 'on the GPU'}, budget {BUDGET_S:.0f} s, "
             f"took {time.monotonic() - started:.0f} s",
             f"{'stage':<6} {'status':<15} {'s':>6} {'box':>5}  result"]
    lines += [f"{r['stage']:<6} {r['status']:<15} {r['seconds']:>6.1f} {r['box_s']:>5}  "
              f"{r['result'][:110]}" for r in rows]
    bench_text = (OUT / "bench.txt").read_text() if (OUT / "bench.txt").exists() else ""
    verdicts = [line for line in bench_text.splitlines() if VERDICT.match(line)]
    lines += ["open targets (bench/NOTES.md):", *verdicts] if verdicts else []
    summary = "\n".join(lines)
    (OUT / "summary.txt").write_text(summary + "\n")
    print(summary)
    # the warm-up is cut short by design whenever the stages before the bench end first
    return 0 if all(r["status"] == "ok" or (r["stage"] == "warm" and r["status"] == "stopped")
                    for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
