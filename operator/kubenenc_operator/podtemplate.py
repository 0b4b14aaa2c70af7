"""``WorkerPool.spec.template``: what a pool's pods may add to the operator's worker pod.

The operator owns the worker container (command, probes, the backend URL, the drain) and its
hardening; a pool adds what real workloads need around it: resources, environment (also from
Secrets and ConfigMaps), volumes, placement, priority, pull secrets, a service account, pod
labels and annotations, and the pod's security context within the rule below.

**The security rule: the operator's hardening always wins.** The worker container always runs
with ``allowPrivilegeEscalation: false``, a read-only root file system and every capability
dropped; none of that is configurable. The pod's ``securityContext`` may choose *which*
non-root user and groups run the worker (``runAsUser`` >= 1, ``runAsGroup``, ``fsGroup``,
``supplementalGroups``, ``fsGroupChangePolicy``), add sysctls and pick a ``Localhost`` seccomp
profile; it cannot turn ``runAsNonRoot`` off, run as uid 0, or set seccomp ``Unconfined``. The
API server refuses those values (CEL, with a message); the renderer
(:func:`kubenenc_operator.resources.pod_template`) forces the hardened values anyway.

Kubernetes' own large types (a volume's source, affinity terms, label selectors) are kept as
given (``x-kubernetes-preserve-unknown-fields``) apart from the parts checked here: the
Deployment the operator writes is validated by the API server in full.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from kubenenc_operator.schema import DNS_LABEL, DNS_SUBDOMAIN, PRESERVE, SpecModel, cel

RESERVED_ENV = (
    "KUBENENC_BACKEND",
    "KUBENENC_NAMESPACE",
    "KUBENENC_APP_NAME",
    "KUBENENC_WORKER__DRAIN_GRACE",
    "KUBENENC_WORKER__HTTP_HOST",
    "KUBENENC_WORKER__HEARTBEAT_TIMEOUT",
    "KUBENENC_WORKER__MAX_LOST",
)
"""Variables the operator sets on the worker; a pool cannot override them."""
RESERVED_VOLUME = "tmp"
"""The operator's ``/tmp`` emptyDir (the root file system is read-only)."""
RESERVED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
QUALIFIED_NAME = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"  # noqa: E501
"""A label key (CEL string literal form: backslashes doubled)."""


def _name_rule(what: str, pattern: str = DNS_SUBDOMAIN) -> dict[str, Any]:
    return cel(
        (
            f"self.matches('{pattern}')",
            f"'{what} must be a Kubernetes name (lower case letters, digits, - and .), "
            "got \"' + self + '\"'",
        )
    )


def _exactly_one(fields: tuple[str, ...], what: str) -> dict[str, Any]:
    listed = ", ".join(f"has(self.{f})" for f in fields)
    return cel(
        (f"[{listed}].filter(x, x).size() == 1", f"{what}: set exactly one of {', '.join(fields)}")
    )


_Name = Annotated[str, Field(min_length=1, max_length=253, json_schema_extra=_name_rule("name"))]


# -- resources ----------------------------------------------------------------------------------


Quantities = Annotated[
    dict[str, Annotated[str, Field(max_length=64)]],
    Field(
        max_length=16,
        json_schema_extra=cel(
            (
                "self.all(k, isQuantity(self[k]))",
                "resources quantities must be Kubernetes quantities such as 500m, 2, 512Mi or "
                "1Gi: fix the value",
            )
        ),
    ),
]


class Resources(SpecModel):
    """Container resources (quantities as strings: ``"500m"``, ``"1Gi"``)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                "!(k in self.limits) || quantity(self.limits[k]).compareTo("
                "quantity(self.requests[k])) >= 0)",
                "a resources limit is below its request: raise the limit or lower the request",
            )
        )
    )

    requests: Quantities | None = None
    limits: Quantities | None = None


# -- environment --------------------------------------------------------------------------------


class KeySelector(SpecModel):
    """A key of a Secret or ConfigMap in the pool's namespace."""

    name: _Name
    key: str = Field(min_length=1, max_length=253)
    optional: bool | None = None


class FieldSelector(SpecModel):
    """A field of the pod (downward API), such as ``metadata.name`` or ``spec.nodeName``."""

    field_path: str = Field(min_length=1, max_length=256)
    api_version: str | None = Field(default=None, max_length=64)


class ResourceFieldSelector(SpecModel):
    """A resource of the worker container, such as ``limits.memory``."""

    resource: str = Field(min_length=1, max_length=64)
    container_name: str | None = Field(default=None, max_length=63)
    divisor: str | None = Field(default=None, max_length=64)


class EnvVarSource(SpecModel):
    """Where a variable's value comes from (exactly one)."""

    model_config = ConfigDict(
        json_schema_extra=_exactly_one(
            ("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef"), "valueFrom"
        )
    )

    secret_key_ref: KeySelector | None = None
    config_map_key_ref: KeySelector | None = None
    field_ref: FieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None


_reserved_env = ", ".join(f"'{n}'" for n in RESERVED_ENV)


class EnvVar(SpecModel):
    """An environment variable of the worker container: a value, or one from ``valueFrom``."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!(has(self.value) && has(self.valueFrom))",
                "an env entry has both value and valueFrom: keep one",
            ),
            (
                f"!(self.name in [{_reserved_env}])",
                "'env \"' + self.name + '\" is set by the operator (it wires the worker to its "
                "backend and namespace): remove it or use another name'",
            ),
        )
    )

    name: str = Field(
        min_length=1,
        max_length=256,
        json_schema_extra=cel(
            (
                "self.matches('^[-._a-zA-Z][-._a-zA-Z0-9]*$')",
                "'env name must be letters, digits, _, - or . and not start with a digit, got \"'"
                " + self + '\"'",
            )
        ),
    )
    value: str | None = Field(default=None, max_length=32768)
    value_from: EnvVarSource | None = None


class NameRef(SpecModel):
    """A Secret or ConfigMap named in the pool's namespace."""

    name: _Name
    optional: bool | None = None


class LocalRef(SpecModel):
    """A Secret named in the pool's namespace (an image pull secret)."""

    name: _Name


class EnvFromSource(SpecModel):
    """Every key of one Secret or ConfigMap as variables (``env`` entries win on a clash)."""

    model_config = ConfigDict(
        json_schema_extra=_exactly_one(("secretRef", "configMapRef"), "envFrom")
    )

    prefix: str | None = Field(default=None, max_length=128)
    secret_ref: NameRef | None = None
    config_map_ref: NameRef | None = None


# -- volumes ------------------------------------------------------------------------------------


class Volume(SpecModel):
    """A pod volume: a ``name`` plus one Kubernetes volume source (``secret``, ``configMap``,
    ``persistentVolumeClaim``, ``emptyDir``, ``csi``, ...), kept as given (the API server
    checks the source when the operator writes the Deployment; none means an emptyDir)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            **PRESERVE,
            **cel(
                (
                    f"self.name != '{RESERVED_VOLUME}'",
                    f'volume name "{RESERVED_VOLUME}" is the operator\'s (its /tmp emptyDir): '
                    "pick another name",
                ),
            ),
        },
    )

    name: str = Field(
        min_length=1, max_length=63, json_schema_extra=_name_rule("volume name", DNS_LABEL)
    )


class VolumeMount(SpecModel):
    """Where a volume of ``template.volumes`` appears in the worker container."""

    name: str = Field(min_length=1, max_length=63)
    mount_path: str = Field(
        min_length=1,
        max_length=1024,
        json_schema_extra=cel(
            (
                "self.startsWith('/') && self != '/' && self != '/tmp'",
                "'mountPath must be an absolute path other than / and /tmp (the operator owns "
                "/tmp), got \"' + self + '\"'",
            )
        ),
    )
    read_only: bool | None = None
    sub_path: str | None = Field(default=None, max_length=1024)
    sub_path_expr: str | None = Field(default=None, max_length=1024)
    mount_propagation: Literal["None", "HostToContainer"] | None = Field(
        default=None, description="Bidirectional needs a privileged container: not offered."
    )


# -- placement ----------------------------------------------------------------------------------


class Toleration(SpecModel):
    """Lets the pods land on nodes with a matching taint."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value) "
                "|| self.value == ''",
                "a toleration with operator Exists matches every value: remove value",
            ),
            (
                "has(self.key) || (has(self.operator) && self.operator == 'Exists')",
                "a toleration without key must use operator Exists: set operator or add a key",
            ),
            (
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds applies only to effect NoExecute: set effect or remove it",
            ),
        )
    )

    key: str | None = Field(default=None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Affinity(SpecModel):
    """Kubernetes' affinity, each part kept as given."""

    node_affinity: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE)
    pod_affinity: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE)
    pod_anti_affinity: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE)


class TopologySpreadConstraint(SpecModel):
    """Spread the pool's pods over zones or nodes; ``labelSelector`` defaults to its pods."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.minDomains) || self.whenUnsatisfiable == 'DoNotSchedule'",
                "minDomains needs whenUnsatisfiable: DoNotSchedule: change it or remove minDomains",
            )
        )
    )

    max_skew: int = Field(ge=1, le=1000)
    topology_key: str = Field(min_length=1, max_length=316)
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    label_selector: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra=PRESERVE,
        description="Default: the pool's own pods (kubenenc.io/pool).",
    )
    min_domains: int | None = Field(default=None, ge=1, le=1000)
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    node_taints_policy: Literal["Honor", "Ignore"] | None = None
    match_label_keys: list[Annotated[str, Field(max_length=316)]] | None = Field(
        default=None, max_length=16
    )


# -- security -----------------------------------------------------------------------------------


class SeccompProfile(SpecModel):
    """RuntimeDefault (the operator's default) or a Localhost profile; never Unconfined."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.type != 'Unconfined'",
                "seccompProfile.type Unconfined would weaken the worker's sandbox: use "
                "RuntimeDefault or Localhost",
            ),
            (
                "self.type != 'Localhost' || has(self.localhostProfile)",
                "seccompProfile.type Localhost needs localhostProfile: set it",
            ),
        )
    )

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]
    localhost_profile: str | None = Field(default=None, max_length=1024)


class Sysctl(SpecModel):
    """A namespaced kernel parameter (the kubelet must allow unsafe ones)."""

    name: str = Field(min_length=1, max_length=253)
    value: str = Field(max_length=1024)


class PodSecurityContext(SpecModel):
    """The pod's security context, within the operator's hardening (see the module doc)."""

    run_as_user: int | None = Field(
        default=None, ge=1, le=2147483647, description="Any uid but 0 (root)."
    )
    run_as_group: int | None = Field(default=None, ge=0, le=2147483647)
    run_as_non_root: bool | None = Field(
        default=None,
        description="Always true (the operator's hardening); false is refused.",
        json_schema_extra=cel(
            (
                "self == true",
                "securityContext.runAsNonRoot cannot be false: the operator always runs "
                "workers as non-root; remove it or set true",
            )
        ),
    )
    fs_group: int | None = Field(default=None, ge=0, le=2147483647)
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None
    supplemental_groups: list[Annotated[int, Field(ge=0, le=2147483647)]] | None = Field(
        default=None, max_length=32
    )
    seccomp_profile: SeccompProfile | None = None
    sysctls: list[Sysctl] | None = Field(default=None, max_length=32)


# -- the template -------------------------------------------------------------------------------

_reserved_labels = ", ".join(f"'{n}'" for n in RESERVED_LABELS)
_map_key = str
"""Map keys: CRD schemas cannot bound them (no ``propertyNames`` in Kubernetes' schema
language; the API server drops it, and refuses the CRD under strict validation), so their
length is a CEL rule (:data:`_KEY_SIZE`)."""
_KEY_SIZE = (
    "self.all(k, size(k) <= 316)",
    "keys must be at most 316 characters (a 253-character prefix, '/', a 63-character name)",
)
_LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]


class PodTemplate(SpecModel):
    """What a pool adds to its worker pods (``spec.template``); see the module doc."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) "
                "&& self.volumes.exists(v, v.name == m.name))",
                "every volumeMounts[].name must name an entry of template.volumes: add the "
                "volume or fix the name",
            )
        )
    )

    labels: dict[_map_key, _LabelValue] | None = Field(
        default=None,
        max_length=32,
        description="Extra pod labels.",
        json_schema_extra=cel(
            (
                f"self.all(k, !k.startsWith('kubenenc.io/') && !(k in [{_reserved_labels}]))",
                "template.labels cannot set kubenenc.io/* or app.kubernetes.io/name, instance "
                "or managed-by: the operator selects its pods with them; use other keys",
            ),
            _KEY_SIZE,
            (
                f"self.all(k, k.matches('{QUALIFIED_NAME}'))",
                "template.labels keys must be qualified names such as team or example.com/team",
            ),
        ),
    )
    annotations: dict[_map_key, Annotated[str, Field(max_length=65536)]] | None = Field(
        default=None,
        max_length=64,
        description="Extra pod annotations.",
        json_schema_extra=cel(
            (
                "self.all(k, !k.startsWith('kubenenc.io/') "
                "&& k != 'controller.kubernetes.io/pod-deletion-cost')",
                "template.annotations cannot set kubenenc.io/* or pod-deletion-cost: the "
                "operator writes them; use other keys",
            ),
            _KEY_SIZE,
        ),
    )
    resources: Resources | None = None
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] | None = Field(default=None, max_length=32)
    volumes: list[Volume] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    volume_mounts: list[VolumeMount] | None = Field(default=None, max_length=64)
    node_selector: dict[_map_key, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=32, json_schema_extra=cel(_KEY_SIZE)
    )
    tolerations: list[Toleration] | None = Field(default=None, max_length=32)
    affinity: Affinity | None = None
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None, max_length=8
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, json_schema_extra=_name_rule("priorityClassName")
    )
    image_pull_secrets: list[LocalRef] | None = Field(default=None, max_length=16)
    service_account_name: str | None = Field(
        default=None, max_length=253, json_schema_extra=_name_rule("serviceAccountName")
    )
    security_context: PodSecurityContext | None = None
