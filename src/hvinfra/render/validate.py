"""`hvinfra render … --check`: run the validator this machine has on a rendered file.

compose: `docker compose config` (v2), else `docker-compose config` (1.x) on a copy less the
keys 1.x does not know (it says which). k8s: kubernetes-validate (strict, the newest schemas it
ships; `pip install 'hvinfra[render]'`), else `kubectl apply --dry-run=client`. slurm: `bash -n`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hvinfra.errors import ExitCode, HvinfraError


class CheckFailed(HvinfraError):
    exit_code = ExitCode.FAILURE


def _run(argv: list[str], what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckFailed(f"{what} could not run: {exc}", "run it by hand") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise CheckFailed(f"{what} rejected the file:\n{detail}", "see the message above")
    return done.stdout


def _compose(path: Path) -> list[str]:
    import yaml

    from hvinfra.render.compose import V1_MISSING_SERVICE_KEYS, v1_compatible

    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            _run([docker, "compose", "-f", str(path), "config", "--quiet"], "docker compose")
            return [f"check: docker compose config accepts {path}"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        raise CheckFailed(
            "no compose to check with: neither `docker compose` (v2) nor docker-compose",
            "install the Docker Compose plugin",
        )
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    copy = path.with_name(path.stem + ".v1-check.yaml")
    copy.write_text(yaml.safe_dump(v1_compatible(document)), encoding="utf-8")
    try:
        _run([legacy, "-f", str(copy), "config", "--quiet"], "docker-compose (1.x)")
    finally:
        copy.unlink(missing_ok=True)
    dropped = ", ".join(V1_MISSING_SERVICE_KEYS)
    return [
        f"check: docker-compose 1.x accepts {path} less {dropped} (keys it predates);"
        " `docker compose` v2 reads the whole file"
    ]


def _k8s(path: Path) -> list[str]:
    import yaml

    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise CheckFailed(
                "no Kubernetes validator here: kubernetes-validate is not installed, no kubectl",
                "pip install 'hvinfra[render]' (kubernetes-validate), then run --check again",
            ) from None
        _run([kubectl, "apply", "--dry-run=client", "-f", str(path)], "kubectl")
        return [f"check: kubectl apply --dry-run=client accepts {path}"]
    version = kubernetes_validate.latest_version()
    count = 0
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if document is None:
            continue
        items = document["items"] if document.get("kind") == "List" else [document]
        for item in items:
            try:
                kubernetes_validate.validate(item, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{item.get('kind')}/{item.get('metadata', {}).get('name')}"
                raise CheckFailed(
                    f"{name} fails the Kubernetes {version} schema: {exc.message}",
                    "report it: hvinfra should not render this",
                ) from exc
            count += 1
    return [f"check: {count} object(s) pass the Kubernetes {version} schemas (strict, offline)"]


def _slurm(path: Path) -> list[str]:
    _run(["bash", "-n", str(path)], "bash -n")
    return [f"check: bash -n accepts {path} (Slurm itself reads it only at sbatch time)"]


def check_file(target: str, path: Path) -> list[str]:
    checks = {"compose": _compose, "k8s": _k8s, "slurm": _slurm}
    return checks[target](path)
