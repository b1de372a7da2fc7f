"""Check hvinfra_worker.py against the OFFICIAL HunyuanVideo code, without a GPU or weights.

    PYTHON_WITH_TORCH scripts/check-worker-official.py t2v CODE_DIR [ARGV_JSON]

Run it with a Python that has torch and the official pins (transformers 4.46.3, diffusers
0.31.0, loguru, einops, imageio; I2V also imports deepspeed and tensorboard), from anywhere;
CODE_DIR is a checkout of Tencent-Hunyuan/HunyuanVideo at fa14b00 (t2v) or HunyuanVideo-I2V at
1481c1d (i2v). It checks that the worker's API probe passes, that the official parser accepts
the sample-script arguments hvinfra plans (ARGV_JSON: {"t2v": [...], "i2v": [...]}; a built-in
example otherwise), and that two requests load once and call `predict` with exactly the
keyword arguments of the official sample script (from_pretrained and predict themselves are
replaced: no model is loaded). Exit 0 when all holds.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parents[1] / "src" / "hvinfra" / "worker" / "hvinfra_worker.py"
EXAMPLE = {
    "t2v": ["--prompt=a cat walks", "--video-size", "544", "960", "--video-length", "33",
            "--infer-steps", "5", "--seed", "3", "--flow-reverse", "--flow-shift", "7",
            "--embedded-cfg-scale", "6"],
    "i2v": ["--prompt=she smiles", "--model", "HYVideo-T/2", "--i2v-mode",
            "--i2v-image-path=in.png", "--i2v-resolution", "540p", "--video-length", "33",
            "--infer-steps", "5", "--seed", "4", "--flow-reverse", "--flow-shift", "17",
            "--embedded-cfg-scale", "6"],
}  # fmt: skip


def official_predict_kwargs(script: Path) -> set[str]:
    """The keyword names the official sample script passes to predict (read from its source)."""
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "predict":
            return {kw.arg for kw in node.keywords if kw.arg}
    raise SystemExit(f"no predict call in {script}")


def main() -> int:
    kind, code = sys.argv[1], Path(sys.argv[2]).resolve()
    argv = json.loads(Path(sys.argv[3]).read_text())[kind] if len(sys.argv) > 3 else EXAMPLE[kind]
    out = Path(tempfile.mkdtemp(prefix="hv-worker-check-"))
    argv = [a for a in argv if not a.startswith("--save-path=")] + [f"--save-path={out}"]
    os.chdir(code)
    sys.path.insert(0, str(code))
    (code / "ckpts").mkdir(exist_ok=True)
    spec = importlib.util.spec_from_file_location("hvinfra_worker", WORKER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    worker = module.Worker(kind, sys.stdout)
    reason = worker.probe()
    print(f"probe: {reason or 'ok'}")
    if reason:
        return 1
    calls: list[dict[str, Any]] = []

    class Sampler:  # stands in for the loaded pipeline only
        def __init__(self, args: Any) -> None:
            self.args = args

        def predict(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(kwargs)
            sample = type("Sample", (), {"unsqueeze": lambda self, dim: self})()
            return {"samples": [sample], "seeds": [kwargs["seed"]], "prompts": [kwargs["prompt"]]}

    loads: list[int] = []
    worker.api["sampler"].from_pretrained = classmethod(
        lambda cls, root, args, **kw: loads.append(1) or Sampler(args)
    )
    worker.api["save"] = lambda sample, path, fps: Path(path).write_bytes(b"")
    worker.generate("a", argv)
    worker.generate("b", argv)
    script = code / ("sample_video.py" if kind == "t2v" else "sample_image2video.py")
    expected = official_predict_kwargs(script)
    ok = set(calls[0]) == expected and len(loads) == 1 and len(list(out.glob("*.mp4"))) == 1
    print(f"parsed: {calls[0]['prompt']!r} {calls[0]['height']}x{calls[0]['width']}"
          f" frames {calls[0]['video_length']} steps {calls[0]['infer_steps']}")  # fmt: skip
    print(
        f"predict kwargs as the official script: {set(calls[0]) == expected}; loads: {len(loads)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
