"""The label keys hvinfra writes on its containers. Ground floor: imports nothing from hvinfra."""

from __future__ import annotations

from typing import Final

LABEL_MANAGED: Final = "io.hvinfra.managed"  # "true" on every container hvinfra creates
LABEL_PROFILE: Final = "io.hvinfra.profile"
LABEL_VERSION: Final = "io.hvinfra.version"
LABEL_SPEC_HASH: Final = "io.hvinfra.spec-hash"  # digest of the RunSpec, read by `up`'s plan
LABEL_SPEC: Final = "io.hvinfra.spec"  # the comparable summary the plan's diff is made from
LABEL_GPUS: Final = "io.hvinfra.gpus"
LABEL_JOB: Final = "io.hvinfra.job"

# Labels that describe the container rather than define it: not part of the spec hash.
UNHASHED: Final = frozenset({LABEL_SPEC_HASH, LABEL_SPEC, LABEL_VERSION})
