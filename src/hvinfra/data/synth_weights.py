# mypy: ignore-errors
"""Write a HunyuanVideo weights tree of the real layout and tensor shapes, filled with random
values (`hvinfra models synth`). Runs INSIDE the profile's container, in the official code
folder (the current directory), with torch, transformers and tokenizers of the image:

    python synth_weights.py t2v|i2v --weights DIR

Where each shape comes from:
- the paths: `hyvideo.constants` (VAE_PATH, TEXT_ENCODER_PATH, TOKENIZER_PATH, read with
  MODEL_BASE=DIR) and the argument defaults of `hyvideo.config.parse_args` (--dit-weight,
  --i2v-dit-weight);
- the DiT: the official `load_model` on the meta device (HUNYUAN_VIDEO_CONFIG), saved as strided
  views of one small random buffer (torch.save stores the buffer once: ~MB, not 26 GB);
- the VAE: `AutoencoderKLCausal3D` at the published config of the released VAE;
- the text encoders: tiny models whose hidden sizes are the DiT's text_states_dim(_2), with at
  least hidden_state_skip_layer + 1 layers; tokenizers whose prompt-template prefix tokenizes to
  exactly the template's crop_start (and, for I2V, `<image>` where image_emb_start says).

The tree is marked synthetic (SYNTHETIC.json, written first, removed by nothing here): the
video such a tree makes is noise. This file is hvinfra's own; nothing is copied from the
official code, which is only imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

MARKER = "SYNTHETIC.json"
SEED = 1234
# The released VAE's config.json (hunyuan-video-*-720p/vae): widths and depths matter for the
# decode's memory and time; latent channels, 4 blocks (8x space) and 4x time are fixed by the DiT.
VAE_CONFIG: dict[str, Any] = {
    "_class_name": "AutoencoderKLCausal3D",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlockCausal3D"] * 4,
    "up_block_types": ["UpDecoderBlockCausal3D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 16,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 256,
    "sample_tsize": 64,
    "scaling_factor": 0.476986,
    "time_compression_ratio": 4,
    "mid_block_add_attention": True,
}
SPECIALS = [
    "<unk>", "<pad>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eot_id|>", "<image>", "system", "user", "assistant",
]  # fmt: skip
TINY_VOCAB = 320  # ids beyond the characters and specials are reserved fillers


def log(text: str) -> None:
    print(f"[synth] {text}", flush=True)


# -- the official code's view ----------------------------------------------------------------
def official_args(kind: str) -> Any:
    from hyvideo.config import parse_args

    argv = [f"sample_{'video' if kind == 't2v' else 'image2video'}.py"]
    if kind == "i2v":
        # what `hvinfra generate i2v` passes: the key set depends on these flags
        argv += ["--i2v-mode", "--model", "HYVideo-T/2", "--embedded-cfg-scale", "6.0"]
    saved, sys.argv = sys.argv, argv
    try:
        return parse_args()
    finally:
        sys.argv = saved


def under_weights(default: str, weights: Path) -> Path:
    """The official defaults say `ckpts/...`: the weights folder is mounted there."""
    parts = Path(default).parts
    return weights.joinpath(*parts[1:]) if parts and parts[0] == "ckpts" else weights / default


def dit_channels(args: Any) -> tuple[int, int, dict[str, Any]]:
    """in/out channels and extra factor kwargs as the official Inference.from_pretrained sets
    them (T2V: latent channels; I2V latent_concat: 2 x latent + 1 mask channel)."""
    extra: dict[str, Any] = {}
    latent = args.latent_channels
    if getattr(args, "i2v_mode", False):
        concat = args.i2v_condition_type == "latent_concat"
        in_channels = latent * 2 + 1 if concat else latent
        if args.embedded_cfg_scale:
            extra["guidance_embed"] = True
        return in_channels, latent, extra
    return latent, latent, extra


def write_dit(args: Any, path: Path) -> dict[str, Any]:
    import torch
    from hyvideo.constants import PRECISION_TO_TYPE
    from hyvideo.modules import load_model

    dtype = PRECISION_TO_TYPE[args.precision]
    in_channels, out_channels, extra = dit_channels(args)
    model = load_model(
        args, in_channels=in_channels, out_channels=out_channels,
        factor_kwargs={"device": "meta", "dtype": dtype, **extra},
    )  # fmt: skip
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    params = sum(_numel(s) for s in shapes.values())
    # element [i, j, ...] = buffer[i + j + ...]: every tensor a view of one buffer
    size = max(sum(d - 1 for d in s) + 1 for s in shapes.values())
    gen = torch.Generator().manual_seed(SEED)
    buffer = (torch.randn(size, generator=gen) * 0.02).to(dtype)  # made small, then views
    state = {k: buffer.as_strided(s, (1,) * len(s)) for k, s in shapes.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module": state}, path)
    size_mib = path.stat().st_size / 2**20
    log(f"DiT {args.model}: {len(shapes)} tensors, {params / 1e9:.2f} B parameters,"
        f" in_channels {in_channels}, file {size_mib:.1f} MiB -> {path}")  # fmt: skip
    return {"model": args.model, "tensors": len(shapes), "parameters": params,
            "in_channels": in_channels, "file_bytes": path.stat().st_size}  # fmt: skip


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def write_vae(vae_dir: Path) -> dict[str, Any]:
    import torch
    from hyvideo.vae.autoencoder_kl_causal_3d import AutoencoderKLCausal3D

    vae_dir.mkdir(parents=True, exist_ok=True)
    (vae_dir / "config.json").write_text(json.dumps(VAE_CONFIG, indent=2) + "\n")
    torch.manual_seed(SEED)
    vae = AutoencoderKLCausal3D.from_config(AutoencoderKLCausal3D.load_config(str(vae_dir)))
    state = vae.state_dict()
    torch.save(state, vae_dir / "pytorch_model.pt")
    params = sum(v.numel() for v in state.values())
    log(f"VAE: {params / 1e6:.1f} M parameters -> {vae_dir}")
    return {"parameters": params}


# -- tokenizers ----------------------------------------------------------------------------
def template_prefix(template: str) -> str:
    return template.split("{}")[0]


def build_tokenizer(template: dict[str, Any], out: Path) -> dict[str, Any]:
    """A character-level tokenizer whose template prefix is exactly crop_start tokens long:
    the specials are one token each, and one added token swallows the start of the longest
    plain stretch of the prefix until the count is right."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    prefix = template_prefix(template["template"])
    crop_start = int(template["crop_start"])
    double_return = "\n\n"
    double_return_id = int(template.get("double_return_token_id", 271))
    chars = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
    vocab: dict[str, int] = {}
    for token in [*SPECIALS, *chars]:
        vocab[token] = len(vocab)
    if len(vocab) > double_return_id:
        raise SystemExit(f"vocab too large for id {double_return_id}")
    while len(vocab) < double_return_id:
        vocab[f"<reserved_{len(vocab)}>"] = len(vocab)
    vocab[double_return] = double_return_id
    specials = [*SPECIALS, double_return]

    def count(extra: list[str]) -> list[str]:
        tok = make(extra)
        return list(tok.encode(prefix).tokens)

    def make(extra: list[str]) -> Any:
        words = dict(vocab)
        for e in extra:
            words.setdefault(e, len(words))
        while len(words) < TINY_VOCAB:
            words[f"<reserved_{len(words)}>"] = len(words)
        tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.add_special_tokens([*specials, *extra])
        bos = "<|begin_of_text|>"
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, words[bos])]
        )
        return tok

    base = len(count([]))
    # the longest stretch of the prefix between specials
    pieces = [prefix]
    for s in specials:
        pieces = [p for piece in pieces for p in piece.split(s)]
    stretch = max(pieces, key=len)
    take = base - crop_start + 1
    if take < 2 or take > len(stretch):
        raise SystemExit(f"cannot reach crop_start {crop_start} from {base} tokens")
    filler = stretch[:take]
    tok = make([filler])
    tokens = tok.encode(prefix).tokens
    if len(tokens) != crop_start:
        raise SystemExit(f"template prefix is {len(tokens)} tokens, expected {crop_start}")
    checks: dict[str, Any] = {"crop_start": crop_start}
    if "image_emb_start" in template:
        where = tokens.index("<image>")
        if where != int(template["image_emb_start"]):
            raise SystemExit(f"<image> at {where}, expected {template['image_emb_start']}")
        checks["image_token_at"] = where
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>", "pad_token": "<pad>", "unk_token": "<unk>",
        "model_max_length": 131072, "clean_up_tokenization_spaces": False,
    }  # fmt: skip
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")})
    )
    ids = {t: tok.token_to_id(t) for t in ("<pad>", "<|begin_of_text|>", "<|end_of_text|>",
                                            "<image>")}  # fmt: skip
    return {"vocab": tok.get_vocab_size(), "ids": ids, **checks}


def write_clip_tokenizer(out: Path) -> int:
    """A slow CLIPTokenizer (vocab.json + merges.txt) over single characters."""
    vocab: dict[str, int] = {}
    for c in range(33, 127):
        vocab[chr(c)] = len(vocab)
        vocab[chr(c) + "</w>"] = len(vocab)
    for t in ("<|startoftext|>", "<|endoftext|>"):
        vocab[t] = len(vocab)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    config = {
        "tokenizer_class": "CLIPTokenizer", "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "model_max_length": 77,
    }  # fmt: skip
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return len(vocab)


def image_processor_config(image_tokens: int, patch: int) -> dict[str, Any]:
    side = round(image_tokens**0.5) * patch
    return {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True,
        "size": {"shortest_edge": side}, "do_center_crop": True,
        "crop_size": {"height": side, "width": side}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True,
        "resample": 3,
    }  # fmt: skip


# -- text encoders -----------------------------------------------------------------------------
def tiny_llama_config(hidden: int, layers: int, vocab: int, ids: dict[str, int]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=16, num_hidden_layers=layers,
        num_attention_heads=1, num_key_value_heads=1, head_dim=16, max_position_embeddings=4096,
        pad_token_id=ids["<pad>"], bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=ids["<|end_of_text|>"], tie_word_embeddings=False,
    )  # fmt: skip


def save_model(model: Any, out: Path) -> int:
    """save_pretrained in fp16, plus the index file the released folders carry."""
    import torch

    model = model.to(torch.float16)
    model.save_pretrained(str(out), safe_serialization=True)
    state = model.state_dict()
    total = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total},
             "weight_map": {k: "model.safetensors" for k in state}}  # fmt: skip
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    return sum(v.numel() for v in state.values())


def write_llm(args: Any, out: Path, template: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import LlamaModel

    info = build_tokenizer(template, out)
    layers = max(2, int(args.hidden_state_skip_layer or 0) + 1)
    torch.manual_seed(SEED)
    model = LlamaModel(tiny_llama_config(args.text_states_dim, layers, info["vocab"], info["ids"]))
    params = save_model(model, out)
    (out / "preprocessor_config.json").write_text(
        json.dumps(image_processor_config(576, 14), indent=2) + "\n"
    )
    log(f"text encoder (llm): hidden {args.text_states_dim}, {layers} layers,"
        f" {params / 1e6:.1f} M parameters -> {out}")  # fmt: skip
    return {**info, "hidden": args.text_states_dim, "layers": layers}


def write_llava(args: Any, out: Path, template: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    info = build_tokenizer(template, out)
    layers = max(2, int(args.hidden_state_skip_layer or 0) + 1)
    image_tokens = int(template.get("image_emb_len", 576))
    patch = 14
    side = round(image_tokens**0.5) * patch
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=1,
        image_size=side, patch_size=patch, projection_dim=32,
    )  # fmt: skip
    text = tiny_llama_config(args.text_states_dim, layers, info["vocab"], info["ids"])
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=info["ids"]["<image>"],
        vision_feature_layer=-2, vision_feature_select_strategy="default",
        image_seq_length=image_tokens, pad_token_id=info["ids"]["<pad>"],
    )  # fmt: skip
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(config)
    params = save_model(model, out)
    (out / "preprocessor_config.json").write_text(
        json.dumps(image_processor_config(image_tokens, patch), indent=2) + "\n"
    )
    log(f"text encoder (llava): hidden {args.text_states_dim}, {layers} layers, vision"
        f" {side}px/{patch} -> {image_tokens} tokens, {params / 1e6:.1f} M parameters"
        f" -> {out}")  # fmt: skip
    return {**info, "hidden": args.text_states_dim, "layers": layers, "image_tokens": image_tokens}


def write_clip(args: Any, out: Path) -> dict[str, Any]:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = write_clip_tokenizer(out)
    config = CLIPTextConfig(
        vocab_size=vocab, hidden_size=args.text_states_dim_2, intermediate_size=16,
        num_hidden_layers=1, num_attention_heads=1, max_position_embeddings=args.text_len_2,
        projection_dim=args.text_states_dim_2, bos_token_id=vocab - 2, eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )  # fmt: skip
    torch.manual_seed(SEED)
    params = save_model(CLIPTextModel(config), out)
    log(f"text encoder 2 (CLIP): hidden {args.text_states_dim_2}, {params / 1e6:.1f} M -> {out}")
    return {"hidden": args.text_states_dim_2, "vocab": vocab}


# -- main --------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["t2v", "i2v"])
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--hvinfra-version", default="")
    ns = parser.parse_args()
    weights = ns.weights.resolve()
    weights.mkdir(parents=True, exist_ok=True)
    os.environ["MODEL_BASE"] = str(weights)  # hyvideo.constants reads it at import
    sys.path.insert(0, os.getcwd())
    started = time.time()
    marker: dict[str, Any] = {
        "synthetic": True, "kind": ns.kind, "note": "synthetic weights: the video is noise",
        "made_by": f"hvinfra {ns.hvinfra_version}".strip(), "complete": False,
        "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    (weights / MARKER).write_text(json.dumps(marker, indent=2) + "\n")

    import torch
    from hyvideo import constants

    args = official_args(ns.kind)
    marker["torch"] = torch.__version__
    if ns.kind == "t2v":
        dit_path = under_weights(args.dit_weight, weights)
        template = constants.PROMPT_TEMPLATE[args.prompt_template_video]
        llm_key = "llm"
    else:
        dit_path = under_weights(args.i2v_dit_weight, weights)
        template = constants.PROMPT_TEMPLATE[args.prompt_template_video]
        if "i2v" not in args.prompt_template_video:  # the sample script switches to the i2v one
            template = constants.PROMPT_TEMPLATE["dit-llm-encode-video-i2v"]
        llm_key = "llm-i2v"
    parts: dict[str, Any] = {}
    parts["dit"] = write_dit(args, dit_path)
    parts["dit"]["path"] = str(dit_path.relative_to(weights))
    parts["vae"] = write_vae(Path(constants.VAE_PATH[args.vae]))
    llm_dir = Path(constants.TEXT_ENCODER_PATH[llm_key])
    if ns.kind == "t2v":
        parts["text_encoder"] = write_llm(args, llm_dir, template)
    else:
        parts["text_encoder"] = write_llava(args, llm_dir, template)
    parts["text_encoder_2"] = write_clip(args, Path(constants.TEXT_ENCODER_PATH["clipL"]))
    written = [
        str(dit_path.relative_to(weights)),
        *(
            str(Path(d).relative_to(weights))
            for d in (constants.VAE_PATH[args.vae], llm_dir, constants.TEXT_ENCODER_PATH["clipL"])
        ),
    ]  # what `models pull` removes before downloading the real weights
    marker.update(parts=parts, written=written, complete=True,
                  seconds=round(time.time() - started, 1))  # fmt: skip
    (weights / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    log(f"done in {marker['seconds']} s: {weights} (marked synthetic in {MARKER})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
