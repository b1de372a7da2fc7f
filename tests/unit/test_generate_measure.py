"""What a job measured: the NVML memory peak over recorded records, the phase times and s/step
from the sample script's tqdm lines (as they arrive: several updates per chunk, `\\r`-split)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hvinfra.generate.measure import (
    MemoryPeak,
    MemorySampler,
    PhaseClock,
    gpu_indices,
    rate_seconds,
    summary_line,
)
from hvinfra.generate.progress import LineSplitter, parse_step
from hvinfra.host_gpu import load_records
from hvinfra.records import GpuProcess, GpuSystem

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
GIB = 2**30


def h200() -> GpuSystem:
    return load_records(str(FIXTURES / "h200-captured.json"))


def with_use(system: GpuSystem, used: int, processes: tuple[GpuProcess, ...] = ()) -> GpuSystem:
    gpu = replace(system.gpus[0], memory_used_bytes=used, processes=processes)
    return replace(system, gpus=(gpu,))


def test_peak_is_per_process_when_nvml_lists_the_jobs_processes() -> None:
    base = h200()
    other = GpuProcess(pid=7, used_memory_bytes=2 * GIB)
    peak = MemoryPeak(gpus=(0,))
    peak.start(with_use(base, 3 * GIB, (other,)))
    for job_bytes in (10 * GIB, 41 * GIB, 30 * GIB):
        job = GpuProcess(pid=4242, used_memory_bytes=job_bytes)
        peak.add(with_use(base, 3 * GIB + job_bytes, (other, job)))
    data = peak.as_dict()
    assert data["source"] == "nvml-process"
    assert data["peak_bytes"] == 41 * GIB  # the other process (in the baseline) is not counted
    assert data["peak_gib"] == 41.0
    assert data["peak_gpu_used_bytes"] == 44 * GIB


def test_peak_falls_back_to_gpu_memory_over_the_baseline_without_process_records() -> None:
    base = h200()  # the captured H200: no process list, 0.6 GB in use before the job
    peak = MemoryPeak(gpus=(0,))
    peak.start(base)
    before = base.gpus[0].memory_used_bytes
    peak.add(with_use(base, before + 20 * GIB))
    peak.add(with_use(base, before + 42 * GIB))
    assert peak.source == "nvml-gpu-used-minus-baseline"
    assert peak.peak_bytes == 42 * GIB


def test_a_job_in_a_worker_that_holds_the_model_counts_the_whole_gpu() -> None:
    """The worker process was there before the job (its memory is the model): per process it
    would be left out, over the baseline the model would be; the GPU's use is the figure."""
    base = h200()
    worker = GpuProcess(pid=99, used_memory_bytes=30 * GIB)
    peak = MemoryPeak(gpus=(0,), whole_gpu=True)
    peak.start(with_use(base, 30 * GIB, (worker,)))
    for used in (35 * GIB, 42 * GIB, 31 * GIB):
        peak.add(with_use(base, used, (replace(worker, used_memory_bytes=used),)))
    assert peak.source == "nvml-gpu-used"
    assert peak.peak_bytes == 42 * GIB


def test_gpu_indices_of_a_selection() -> None:
    assert gpu_indices(("0", "2")) == (0, 2)
    assert gpu_indices("all") == () and gpu_indices(None) == ()
    assert gpu_indices(("GPU-1234",)) == ()


def test_sampler_survives_a_probe_that_fails_and_samples_at_exit() -> None:
    calls = {"n": 0}
    base = h200()

    def probe() -> GpuSystem:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("NVML lost")
        return with_use(base, calls["n"] * GIB)

    with MemorySampler(probe, (0,), interval=3600) as sampler:
        pass
    assert sampler.peak.samples == 0 and sampler.peak.errors == 1
    with MemorySampler(probe, (0,), interval=3600) as sampler:
        pass
    assert sampler.peak.samples == 1


def test_phase_times_and_steady_seconds_per_step_from_tqdm_chunks() -> None:
    clock = PhaseClock(total_steps=5, started=0.0)
    splitter = LineSplitter()
    # (arrival time, bytes) as the exec stream delivers them: \r-separated tqdm updates
    chunks = [
        (20.0, b"loading...\n  0%|          | 0/5 [00:00<?, ?it/s]"),
        (23.0, b"\r 20%|##        | 1/5 [00:03<00:12,  3.00s/it]"),
        (24.3, b"\r 40%|####      | 2/5 [00:04<00:04,  1.30s/it]"),
        (25.6, b"\r 60%|######    | 3/5 [00:05<00:02,  1.30s/it]\r 80%|########  | 4/5"
               b" [00:06<00:01,  1.30s/it]"),
        (28.2, b"\r100%|##########| 5/5 [00:08<00:00,  1.30s/it]\n"),
    ]  # fmt: skip
    for at, data in chunks:
        for line in [*splitter.feed(data), splitter.pending]:
            step = parse_step(line)
            if step is not None:
                clock.step(step, now=at)
    clock.end(now=33.0)
    phases = clock.as_dict()
    assert phases["load_s"] == 20.0
    assert phases["steps_s"] == 8.2
    assert phases["decode_s"] == 4.8
    assert phases["tqdm_rate"] == "1.30s/it"
    assert phases["seconds_per_step"] == 1.3  # the 3 s warm-up step is left out


def test_rate_seconds_reads_both_tqdm_forms() -> None:
    assert rate_seconds("1.27s/it") == 1.27
    assert rate_seconds("2.50it/s") == 0.4
    assert rate_seconds("?it/s") is None


def test_summary_line_names_peak_source_and_phases() -> None:
    line = summary_line(
        {
            "gpu_memory": {"peak_gib": 41.93, "source": "nvml-process"},
            "phases": {"seconds_per_step": 1.271, "load_s": 20.2, "steps_s": 6.4, "decode_s": 4.6},
        }
    )
    assert line == "peak 41.9 GiB (nvml-process), 1.27 s/step, load 20s / steps 6s / decode 5s"


def test_a_tqdm_state_is_timed_when_it_arrives_not_when_the_next_one_does() -> None:
    splitter = LineSplitter()
    lines = list(splitter.feed(b"\r 20%|##        | 1/5 [00:03<00:12,  3.00s/it]"))
    assert [parse_step(line) for line in lines] == [None]  # no line holds the state yet
    step = parse_step(splitter.pending)
    assert step is not None and step.n == 1
