"""Profile -> Kubernetes manifests: a Deployment (one interactive container, like `up`), a Job
(one generation) and an indexed Job (a batch file split across pods). Pure: dicts in, YAML or
JSON text out.

What changes on the way from `docker run` to a pod, and why:
- GPUs are an extended resource (`nvidia.com/gpu`), counted, not listed: the device plugin
  picks them, and the pod sees them as 0..K-1.
- Host IPC becomes a memory-backed emptyDir at /dev/shm with a size limit: PyTorch needs a
  large /dev/shm, not the node's IPC namespace, and hostIPC would let the pod see every IPC
  object on the node. `kubernetes.host_ipc: true` restores the official flag.
- Host network is not used: a single pod needs no node ports, and hostNetwork exposes the
  node's interfaces.
- memlock and stack ulimits cannot be set per pod or per container: the pod inherits the
  container runtime's limits, which the node sets (see ULIMITS_NOTE).
- The hardened default becomes a securityContext: no privilege escalation, seccomp
  RuntimeDefault, every capability dropped except those the profile adds.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from hvinfra import __version__
from hvinfra.argv import is_secret_name
from hvinfra.generate.plan import JobPlan
from hvinfra.profiles.models import Profile, Toleration
from hvinfra.render import RenderError, Source, comment_block, dump_yaml

ULIMITS_NOTE = (
    "memlock/stack ulimits are not settable per pod: set them for the container runtime on each"
    " GPU node (containerd/CRI-O systemd unit: LimitMEMLOCK=infinity, LimitSTACK=67108864,"
    " then restart it), or HunyuanVideo runs with the runtime's defaults"
)
BATCH_MOUNT = "/etc/hvinfra/batch"
CONTAINER = "hunyuanvideo"


def dns_name(text: str, limit: int = 52) -> str:
    """A DNS-1123 label (lowercase alphanumerics and '-'), short enough for generated names."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return name or CONTAINER


def _label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:63].strip("-._") or "x"


def gpu_count(profile: Profile) -> int:
    settings = profile.kubernetes
    if settings.gpus is not None:
        return settings.gpus
    devices = profile.gpu.devices
    if devices == "none":
        return 0
    return len(devices) if isinstance(devices, list) else 1


def _quantity(size: int) -> str:
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _metadata(profile: Profile, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {
            "app.kubernetes.io/name": CONTAINER,
            "app.kubernetes.io/managed-by": "hvinfra",
            "hvinfra.io/profile": _label_value(profile.name),
        },
        "annotations": {
            "hvinfra.io/version": __version__,
            "hvinfra.io/profile": profile.name,
            "hvinfra.io/ulimits": ULIMITS_NOTE,
        },
    }
    if profile.kubernetes.namespace:
        meta["namespace"] = profile.kubernetes.namespace
    return meta


def _env(profile: Profile, extra: dict[str, str], secret: str) -> list[dict[str, Any]]:
    """Plain variables as values; secret-looking ones from a Secret the user creates."""
    env = []
    for name, value in {**profile.environment, **extra}.items():
        if is_secret_name(name):
            ref = {"secretKeyRef": {"name": secret, "key": name}}
            env.append({"name": name, "valueFrom": ref})
        else:
            env.append({"name": name, "value": value})
    return env


def _volume_name(key: str) -> str:
    return dns_name(f"hv-{key}", 63)


def _storage(profile: Profile) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) for the profile's folders: hostPath or one PVC with subPaths."""
    settings = profile.kubernetes
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if settings.storage == "pvc":
        volumes.append({"name": "hv-data", "persistentVolumeClaim": {"claimName": settings.claim}})
    for key, volume in profile.volumes.items():
        mount: dict[str, Any] = {"mountPath": volume.container}
        if volume.read_only:
            mount["readOnly"] = True
        if settings.storage == "pvc":
            mounts.append({"name": "hv-data", "subPath": key, **mount})
        else:
            name = _volume_name(key)
            volumes.append(
                {"name": name, "hostPath": {"path": volume.host, "type": "DirectoryOrCreate"}}
            )
            mounts.append({"name": name, **mount})
    if not settings.host_ipc:
        size = profile.shm_size or settings.shm_size
        volumes.append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _quantity(size)}}
        )
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def _security(profile: Profile) -> dict[str, Any]:
    if profile.privileged:
        return {"privileged": True, "allowPrivilegeEscalation": True}
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if profile.cap_add:
        capabilities["add"] = list(profile.cap_add)
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": capabilities,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _toleration(item: Toleration) -> dict[str, Any]:
    out: dict[str, Any] = {"operator": item.operator}
    for key, value in (
        ("key", item.key), ("value", item.value), ("effect", item.effect),
        ("tolerationSeconds", item.toleration_seconds),
    ):  # fmt: skip
        if value is not None:
            out[key] = value
    return out


def _pod_spec(
    profile: Profile,
    container: dict[str, Any],
    *,
    restart: str,
    gpus: int,
    extra_volumes: tuple[dict[str, Any], ...] = (),
    extra_mounts: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    settings = profile.kubernetes
    volumes, mounts = _storage(profile)
    container = {
        "name": CONTAINER,
        "image": profile.image_ref,
        "imagePullPolicy": settings.image_pull_policy,
        **container,
        "volumeMounts": [*mounts, *extra_mounts],
        "securityContext": _security(profile),
    }
    if gpus:
        container["resources"] = {"limits": {settings.gpu_resource: gpus}}
    spec: dict[str, Any] = {"restartPolicy": restart, "containers": [container]}
    if settings.host_ipc:
        spec["hostIPC"] = True
    if not profile.privileged:
        spec["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if settings.runtime_class:
        spec["runtimeClassName"] = settings.runtime_class
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [_toleration(t) for t in settings.tolerations]
    spec["volumes"] = [*volumes, *extra_volumes]
    return spec


def _pod_labels(profile: Profile, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": CONTAINER,
        "app.kubernetes.io/instance": dns_name(profile.container_name, 63),
        "app.kubernetes.io/component": component,
    }


def _secret_name(profile: Profile) -> str:
    return dns_name(profile.container_name) + "-env"


def deployment(profile: Profile) -> dict[str, Any]:
    """One interactive container, like `hvinfra up`: `kubectl exec -it deploy/NAME -- bash`."""
    name = dns_name(profile.container_name)
    container: dict[str, Any] = {"tty": profile.tty, "stdin": profile.stdin_open}
    if profile.command is not None:
        container["command"] = list(profile.command)
    if profile.working_dir:
        container["workingDir"] = profile.working_dir
    env = _env(profile, {}, _secret_name(profile))
    if env:
        container["env"] = env
    labels = _pod_labels(profile, "interactive")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(profile, name),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # never two pods holding the same GPUs' job
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": _pod_spec(profile, container, restart="Always", gpus=gpu_count(profile)),
            },
        },
    }


def _job_container(profile: Profile, plan: JobPlan) -> dict[str, Any]:
    container: dict[str, Any] = {"command": list(plan.argv), "workingDir": plan.workdir}
    env = _env(profile, plan.env_map, _secret_name(profile))
    if env:
        container["env"] = env
    return container


def job(profile: Profile, plan: JobPlan, gpus: int) -> dict[str, Any]:
    """One generation: the sample script's argv as the container's command."""
    labels = _pod_labels(profile, "generate")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(profile, dns_name(f"{profile.container_name}-{plan.job_id}")),
        "spec": {
            "backoffLimit": profile.kubernetes.backoff_limit,
            "template": {
                "metadata": {"labels": labels},
                "spec": _pod_spec(profile, _job_container(profile, plan), restart="Never",
                                  gpus=gpus),
            },
        },
    }  # fmt: skip


def shard_script(plans: list[tuple[str, JobPlan]]) -> str:
    """A pod's share of a batch: each job in turn, every one attempted; fails if any failed."""
    out = ["#!/bin/sh", "# rendered by hvinfra: this pod's lines of the batch file", "status=0"]
    for label, plan in plans:
        out.append(f"echo {shlex.quote('hvinfra: ' + label)}")
        out.append(f"( cd {shlex.quote(plan.workdir)} && {plan.line} ) || status=1")
    out.append('exit "$status"')
    return "\n".join(out) + "\n"


def indexed_job(
    profile: Profile, shard_plans: list[list[tuple[str, JobPlan]]], gpus: int, name: str
) -> list[dict[str, Any]]:
    """A ConfigMap with one script per shard, and an indexed Job whose pod N runs script N
    (JOB_COMPLETION_INDEX)."""
    base = dns_name(f"{profile.container_name}-{name}")
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(profile, base),
        "data": {f"shard-{i}.sh": shard_script(p) for i, p in enumerate(shard_plans)},
    }
    script = f'exec sh "{BATCH_MOUNT}/shard-$JOB_COMPLETION_INDEX.sh"'
    container: dict[str, Any] = {"command": ["sh", "-c", script]}
    workdir = shard_plans[0][0][1].workdir
    container["workingDir"] = workdir
    env = _env(profile, {}, _secret_name(profile))
    if env:
        container["env"] = env
    count = len(shard_plans)
    labels = _pod_labels(profile, "batch")
    pod = _pod_spec(
        profile, container, restart="Never", gpus=gpus,
        extra_volumes=({"name": "hv-batch", "configMap": {"name": base}},),
        extra_mounts=({"name": "hv-batch", "mountPath": BATCH_MOUNT, "readOnly": True},),
    )  # fmt: skip
    spec = {
        "completionMode": "Indexed",
        "completions": count,
        "parallelism": min(profile.kubernetes.parallelism or count, count),
        "backoffLimitPerIndex": profile.kubernetes.backoff_limit,
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    batch_job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(profile, base)}
    return [config_map, {**batch_job, "spec": spec}]


def render_manifests(
    profile: Profile, objects: list[dict[str, Any]], *, as_json: bool = False
) -> str:
    import json

    if not objects:
        raise RenderError("nothing to render", "give --prompt or --batch, or neither")
    if as_json:
        if len(objects) == 1:
            return json.dumps(objects[0], indent=2) + "\n"
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
    header = Source(profile.name, "k8s").header(
        "Apply with `kubectl apply -f FILE`. Validated offline against the Kubernetes schemas.",
        "",
        *_wrap("Note: " + ULIMITS_NOTE + "."),
    )
    docs = [dump_yaml(o) for o in objects]
    return comment_block(header) + "---\n" + "---\n".join(docs)


def _wrap(text: str, width: int = 96) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)
