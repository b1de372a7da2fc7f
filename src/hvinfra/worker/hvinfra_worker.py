"""hvinfra's batch worker. Runs INSIDE the HunyuanVideo container, from the official code's
folder (the working directory), with the container's Python: standard library plus the
official `hyvideo` package. Never imported by hvinfra itself; copied into the container.

It loads the sampler once, through the official code's own API (`parse_args`,
`HunyuanVideoSampler.from_pretrained`, `predict`, `save_videos_grid`), and then takes requests
one by one. A request is the official sample script's argument list, parsed by the official
parser, so every default is the script's own. Each video is written exactly as the sample script
writes it, and logged with the same "Sample save to:" line.

Protocol: one JSON object per line. In on stdin: {"id": ID, "argv": [ARG, ...]}. Each request's
output ends with the stderr line `hvinfra_worker - request ID ended`, written before its event:
the engine forwards stdout and stderr apart, so the host waits for that line to know it has the
request's whole output. Out on the original stdout (the code's own prints go to stderr with its
progress bars):
  {"event": "ready"|"unsupported"|"loading"|"loaded"|"done"|"failed", ...}.
End of stdin ends the worker.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

PROTOCOL = 1
# Arguments that may change from one video to the next without loading the models again:
# they reach `predict` (or the output name); every other argument shapes what is loaded.
PER_REQUEST = frozenset(
    {
        "prompt", "neg_prompt", "video_size", "video_length", "seed", "infer_steps",
        "cfg_scale", "num_videos", "flow_shift", "batch_size", "save_path", "save_path_suffix",
        "i2v_image_path", "i2v_resolution", "i2v_stability",
    }
)  # fmt: skip
T2V_EXTRA = ("embedded_cfg_scale",)  # the T2V DiT is the same with or without it
PREDICT_PARAMS = {
    "t2v": (
        "prompt", "height", "width", "video_length", "seed", "negative_prompt", "infer_steps",
        "guidance_scale", "num_videos_per_prompt", "flow_shift", "batch_size",
        "embedded_guidance_scale",
    ),
    "i2v": ("i2v_mode", "i2v_resolution", "i2v_image_path", "i2v_condition_type", "i2v_stability"),
}  # fmt: skip


class Worker:
    def __init__(self, kind: str, proto: TextIO) -> None:
        self.kind = kind
        self.proto = proto
        self.sampler: Any = None
        self.loaded_with: dict[str, Any] = {}
        self.api: dict[str, Any] = {}

    def emit(self, event: str, **data: Any) -> None:
        self.proto.write(json.dumps({"event": event, **data}, default=str) + "\n")
        self.proto.flush()

    # -- the official code ------------------------------------------------------------------
    def probe(self) -> str:
        """'' when the official code offers the API this worker drives, else why not."""
        try:
            config = importlib.import_module("hyvideo.config")
            inference = importlib.import_module("hyvideo.inference")
            file_utils = importlib.import_module("hyvideo.utils.file_utils")
        except Exception as exc:  # the code is missing or does not import
            return f"cannot import the official code: {type(exc).__name__}: {exc}"
        parse_args = getattr(config, "parse_args", None)
        sampler = getattr(inference, "HunyuanVideoSampler", None)
        save = getattr(file_utils, "save_videos_grid", None)
        if parse_args is None or sampler is None or save is None:
            return "hyvideo lacks parse_args, HunyuanVideoSampler or save_videos_grid"
        if "namespace" not in inspect.signature(parse_args).parameters:
            return "hyvideo.config.parse_args takes no namespace"
        params = inspect.signature(sampler.predict).parameters
        wanted = PREDICT_PARAMS["t2v"] + (PREDICT_PARAMS["i2v"] if self.kind == "i2v" else ())
        missing = [p for p in wanted if p not in params]
        if missing and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return "HunyuanVideoSampler.predict lacks " + ", ".join(missing)
        if not hasattr(sampler, "from_pretrained"):
            return "HunyuanVideoSampler has no from_pretrained"
        self.api = {"parse_args": parse_args, "sampler": sampler, "save": save}
        return ""

    def parse(self, argv: list[str]) -> argparse.Namespace:
        """The official parser over the sample script's arguments (its defaults, its checks)."""
        saved = sys.argv
        sys.argv = ["sample_video.py" if self.kind == "t2v" else "sample_image2video.py", *argv]
        try:
            args: argparse.Namespace = self.api["parse_args"]()
            return args
        finally:
            sys.argv = saved

    def load_key(self, args: argparse.Namespace) -> dict[str, Any]:
        skip = PER_REQUEST | (frozenset(T2V_EXTRA) if self.kind == "t2v" else frozenset())
        return {k: v for k, v in sorted(vars(args).items()) if k not in skip}

    def ensure_loaded(self, request_id: str, args: argparse.Namespace) -> float:
        key = self.load_key(args)
        if self.sampler is not None and key == self.loaded_with:
            return 0.0
        reload = self.sampler is not None
        changed = sorted(k for k in key if reload and self.loaded_with.get(k) != key[k])
        self.emit("loading", id=request_id, reload=reload, changed=changed)
        self.sampler = None
        root = Path(args.model_base)
        if not root.exists():
            raise ValueError(f"`models_root` not exists: {root}")
        started = time.monotonic()
        self.sampler = self.api["sampler"].from_pretrained(root, args=args)
        self.loaded_with = key
        seconds = time.monotonic() - started
        self.emit("loaded", id=request_id, seconds=round(seconds, 2))
        return seconds

    def generate(self, request_id: str, argv: list[str]) -> None:
        started = time.monotonic()
        request = self.parse(argv)
        load_s = self.ensure_loaded(request_id, request)
        args = self.sampler.args  # "the updated args", as the sample script takes them
        for key in PER_REQUEST | frozenset(T2V_EXTRA):
            if hasattr(request, key):
                setattr(args, key, getattr(request, key))
        save_path = (
            args.save_path
            if args.save_path_suffix == ""
            else (f"{args.save_path}_{args.save_path_suffix}")
        )
        os.makedirs(save_path, exist_ok=True)
        kwargs: dict[str, Any] = {
            "prompt": args.prompt, "height": args.video_size[0], "width": args.video_size[1],
            "video_length": args.video_length, "seed": args.seed,
            "negative_prompt": args.neg_prompt, "infer_steps": args.infer_steps,
            "guidance_scale": args.cfg_scale, "num_videos_per_prompt": args.num_videos,
            "flow_shift": args.flow_shift, "batch_size": args.batch_size,
            "embedded_guidance_scale": args.embedded_cfg_scale,
        }  # fmt: skip
        if self.kind == "i2v":
            kwargs.update(
                i2v_mode=args.i2v_mode, i2v_resolution=args.i2v_resolution,
                i2v_image_path=args.i2v_image_path, i2v_condition_type=args.i2v_condition_type,
                i2v_stability=args.i2v_stability, ulysses_degree=args.ulysses_degree,
                ring_degree=args.ring_degree,
            )  # fmt: skip
        outputs = self.sampler.predict(**kwargs)
        paths = []
        for i, sample in enumerate(outputs["samples"]):
            stamp = datetime.fromtimestamp(time.time()).strftime("%Y-%m-%d-%H:%M:%S")
            prompt = str(outputs["prompts"][i])[:100].replace("/", "")
            path = f"{save_path}/{stamp}_seed{outputs['seeds'][i]}_{prompt}.mp4"
            self.api["save"](sample.unsqueeze(0), path, fps=24)
            log(f"Sample save to: {path}")
            paths.append(path)
        self.finish(
            "done", request_id, paths=paths, load_s=round(load_s, 2),
            seconds=round(time.monotonic() - started, 2),
        )  # fmt: skip

    def finish(self, event: str, request_id: str, **data: Any) -> None:
        """A request's last stderr line, then its event (see the protocol above)."""
        sys.stderr.flush()
        log(f"request {request_id} ended")
        self.emit(event, id=request_id, **data)

    def serve(self, requests: TextIO) -> int:
        reason = self.probe()
        if reason:
            self.emit("unsupported", reason=reason)
            return 3
        self.emit("ready", pid=os.getpid(), kind=self.kind, protocol=PROTOCOL)
        for raw in iter(requests.readline, ""):
            if not raw.strip():
                continue
            request_id = ""
            try:
                message = json.loads(raw)
                request_id = str(message["id"])
                self.generate(request_id, [str(a) for a in message["argv"]])
            except KeyboardInterrupt:
                self.finish("failed", request_id, error="interrupted")
                return 130
            except SystemExit as exc:  # the official parser refused the arguments
                self.finish("failed", request_id, error=f"argument error (exit {exc.code})")
            except BaseException as exc:
                traceback.print_exc()
                free_memory()
                self.finish("failed", request_id, error=f"{type(exc).__name__}: {exc}")
        return 0


def log(message: str) -> None:
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    sys.stderr.write(f"{stamp} | INFO     | hvinfra_worker - {message}\n")
    sys.stderr.flush()


def free_memory() -> None:
    try:
        torch = importlib.import_module("torch")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="hvinfra batch worker (inside the container)")
    parser.add_argument("--kind", choices=("t2v", "i2v"), required=True)
    options = parser.parse_args(argv)
    # The protocol keeps the real stdout; whatever the official code prints goes to stderr.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, os.getcwd())
    return Worker(options.kind, proto).serve(sys.stdin)


if __name__ == "__main__":
    sys.exit(main())
