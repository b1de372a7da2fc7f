"""Prompt rewrite through an OpenAI-compatible `/v1/chat/completions` endpoint.

The official repo ships only instruction templates for a separate LLM; these instructions are
hvinfra's own. The API key comes from the environment or a file and is never put in argv,
in messages or in the sidecar.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvinfra.errors import RewriteFailed

ENV_ENDPOINT = "HVINFRA_REWRITE_ENDPOINT"
ENV_API_KEY = "HVINFRA_REWRITE_API_KEY"
ENV_MODEL = "HVINFRA_REWRITE_MODEL"

_COMMON = (
    "You turn a user's idea into one prompt for a text-to-video model that understands English."
    " Rules: keep every subject, action, object, colour, count, place and style the user gave;"
    " invent nothing that contradicts them; write in English (translate any other language);"
    " when the input is only a word or two, grow it into a short concrete scene: who or what is"
    " seen, what moves and how, where, and the light. Describe only what a camera could see."
    " Answer with the prompt alone: no preface, no quotes, no lists, no notes."
)
INSTRUCTIONS = {
    "normal": _COMMON + " Keep it to one to three plain sentences.",
    "master": _COMMON
    + " Then enrich it for visual quality: name the shot size and camera movement, the lens"
    " feel, the lighting and its direction, the colour palette, textures and materials, and the"
    " mood, so that every visible element is vivid. Keep it under 120 words, in flowing prose.",
}


@dataclass(frozen=True)
class RewriteConfig:
    endpoint: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0

    @property
    def url(self) -> str:
        return chat_url(self.endpoint)


def chat_url(endpoint: str) -> str:
    """`http://h:8000`, `…/v1` or `…/v1/chat/completions` -> the chat completions URL."""
    base = endpoint.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return base + "/chat/completions"
    return base + "/v1/chat/completions"


def resolve_config(
    *,
    endpoint: str | None,
    model: str | None,
    key_file: str | None,
    profile_endpoint: str | None,
    profile_model: str,
    profile_key_file: str | None,
    timeout: float,
    env: Mapping[str, str],
) -> RewriteConfig:
    """Flag > environment > profile, for the endpoint, the model and the key."""
    chosen = endpoint or env.get(ENV_ENDPOINT) or profile_endpoint
    if not chosen:
        raise RewriteFailed(
            "--rewrite needs an OpenAI-compatible chat endpoint, and none is configured",
            f"pass --rewrite-endpoint http://HOST:PORT/v1, export {ENV_ENDPOINT}=…, or set"
            " rewrite.endpoint in the profile (`--set rewrite.endpoint=…`)",
        )
    if not chosen.startswith(("http://", "https://")):
        raise RewriteFailed(
            f"rewrite endpoint {chosen!r} is not an http(s) URL",
            "write it like http://127.0.0.1:8000/v1",
        )
    api_key = env.get(ENV_API_KEY) or None
    path = key_file or profile_key_file
    if key_file or (api_key is None and path):
        assert path is not None
        try:
            api_key = Path(path).expanduser().read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise RewriteFailed(
                f"cannot read the rewrite API key file {path}: {exc.strerror or exc}",
                "check the path given with --rewrite-key-file or rewrite.api_key_file",
            ) from exc
    return RewriteConfig(
        endpoint=chosen,
        model=model or env.get(ENV_MODEL) or profile_model,
        api_key=api_key,
        timeout=timeout,
    )


def request_body(prompt: str, mode: str, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": INSTRUCTIONS[mode]},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0.7,
        "stream": False,
    }


Opener = Callable[..., Any]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would resend the Authorization header to whatever host
    the endpoint names. A 3xx then surfaces as an HTTPError, refused below."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def open_no_redirect(request: urllib.request.Request, timeout: float) -> Any:
    return urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout)


def redact(text: str, secret: str | None) -> str:
    """`text` without the secret (an endpoint may echo the key back in its error)."""
    if not secret:
        return text
    return text.replace(secret, "***")


def rewrite_prompt(
    prompt: str, mode: str, config: RewriteConfig, *, opener: Opener = open_no_redirect
) -> str:
    """Send the prompt, return the rewritten one; every failure is a RewriteFailed with a fix
    whose text never holds the API key."""
    try:
        return redact(_rewrite(prompt, mode, config, opener), config.api_key)
    except RewriteFailed as exc:
        clean = RewriteFailed(redact(exc.message, config.api_key), redact(exc.fix, config.api_key))
    clean.__suppress_context__ = True  # --debug prints no chained cause that may hold the key
    raise clean


def _rewrite(prompt: str, mode: str, config: RewriteConfig, opener: Opener) -> str:
    if mode not in INSTRUCTIONS:
        raise RewriteFailed(f"unknown rewrite mode {mode!r}", "use --rewrite normal or master")
    body = json.dumps(request_body(prompt, mode, config.model)).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(config.url, data=body, headers=headers, method="POST")
    try:
        with opener(request, timeout=config.timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise RewriteFailed(
                f"the rewrite endpoint {config.url} answered HTTP {exc.code}, a redirect to"
                f" {exc.headers.get('Location', '?')}; hvinfra does not follow redirects, so the"
                " API key is never sent to another address",
                "point --rewrite-endpoint (or " + ENV_ENDPOINT + ") at the final URL",
            ) from None
        detail = exc.read()[:300].decode("utf-8", "replace").strip()
        fix = {
            401: f"set a valid key in {ENV_API_KEY} or --rewrite-key-file",
            403: f"set a valid key in {ENV_API_KEY} or --rewrite-key-file",
            404: "check the endpoint URL (…/v1) and the model name (--rewrite-model)",
        }.get(exc.code, "check the endpoint's own log")
        raise RewriteFailed(
            f"the rewrite endpoint {config.url} answered HTTP {exc.code}"
            + (f": {detail}" if detail else ""),
            fix,
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RewriteFailed(
            f"cannot reach the rewrite endpoint {config.url}: {reason}",
            "start the LLM server or correct --rewrite-endpoint / " + ENV_ENDPOINT,
        ) from exc
    try:
        payload = json.loads(raw)
        text = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RewriteFailed(
            f"the rewrite endpoint {config.url} did not answer like an OpenAI chat completion",
            "point --rewrite-endpoint at an OpenAI-compatible server (…/v1)",
        ) from exc
    if not isinstance(text, str) or not text.strip():
        raise RewriteFailed(
            f"the rewrite endpoint {config.url} returned an empty prompt",
            "try again, another --rewrite-model, or leave out --rewrite",
        )
    return _clean(text)


def _clean(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text.replace("\x00", "")
