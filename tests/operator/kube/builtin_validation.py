"""The API server's built-in validation of Jobs and Pods, for the test API server.

A real API server refuses a Job whose names, labels, tolerations or resources break its
rules with 422 Invalid and a message listing each field (`Job.batch "x" is invalid:
[spec.template.spec.tolerations[0].operator: Invalid value: ...]`). kmock stores anything,
so without this layer a spec the cluster would refuse looks fine in every test.

Written from Kubernetes' validation (apimachinery's IsDNS1123Subdomain, IsQualifiedName,
IsValidLabelValue, resource.ParseQuantity; core/v1 ValidateTolerations and
ValidateResourceRequirements), independently of the product's own model
(stagescreen.study.kube_rules), so a test catches the two drifting apart.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

LABEL = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
QUANTITY = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 1000, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}  # fmt: skip


def invalid_fields(kind: str, obj: dict[str, Any]) -> list[str]:
    """`path: Invalid value: ...` for each field of a Job or Pod the API server refuses."""
    errors: list[str] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if len(name) > 253 or not re.fullmatch(SUBDOMAIN, name):
        errors.append(f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain')
    if kind == "Job" and len(name) > 63:  # it becomes the pods' batch.kubernetes.io/job-name
        errors.append(f'metadata.name: Invalid value: "{name}": must be no more than 63 characters')
    errors += _labels("metadata.labels", meta.get("labels") or {})
    if kind == "Job":
        template = (obj.get("spec") or {}).get("template") or {}
        errors += _labels(
            "spec.template.metadata.labels", (template.get("metadata") or {}).get("labels") or {}
        )
        errors += _pod("spec.template.spec", template.get("spec") or {})
    else:
        errors += _pod("spec", obj.get("spec") or {})
    return errors


def _labels(path: str, labels: dict[str, Any]) -> list[str]:
    errors = []
    for key, value in labels.items():
        if not _qualified(key):
            errors.append(f'{path}: Invalid value: "{key}": name part must consist of ...')
        if not isinstance(value, str) or len(value) > 63 or not re.fullmatch(f"({LABEL})?", value):
            errors.append(f'{path}: Invalid value: "{value}": a valid label must be ...')
    return errors


def _qualified(key: str) -> bool:
    parts = key.split("/")
    if len(parts) > 2:
        return False
    if len(parts) == 2 and (len(parts[0]) > 253 or not re.fullmatch(SUBDOMAIN, parts[0])):
        return False
    return len(parts[-1]) <= 63 and re.fullmatch(LABEL, parts[-1]) is not None


def _pod(path: str, pod: dict[str, Any]) -> list[str]:
    errors = _labels(f"{path}.nodeSelector", pod.get("nodeSelector") or {})
    for field in ("priorityClassName", "runtimeClassName", "serviceAccountName"):
        value = pod.get(field)
        if value is not None and (len(value) > 253 or not re.fullmatch(SUBDOMAIN, value)):
            errors.append(
                f'{path}.{field}: Invalid value: "{value}": a lowercase RFC 1123 subdomain'
            )
    for index, secret in enumerate(pod.get("imagePullSecrets") or []):
        name = secret.get("name", "")
        if not re.fullmatch(SUBDOMAIN, name):
            errors.append(f'{path}.imagePullSecrets[{index}].name: Invalid value: "{name}"')
    grace = pod.get("terminationGracePeriodSeconds")
    if grace is not None and grace < 0:
        errors.append(f"{path}.terminationGracePeriodSeconds: Invalid value: {grace}: must be >= 0")
    for index, volume in enumerate(pod.get("volumes") or []):
        limit = (volume.get("emptyDir") or {}).get("sizeLimit")
        if limit is not None and _quantity(str(limit)) is None:
            errors.append(f'{path}.volumes[{index}].emptyDir.sizeLimit: Invalid value: "{limit}"')
    for index, toleration in enumerate(pod.get("tolerations") or []):
        errors += _toleration(f"{path}.tolerations[{index}]", toleration)
    for index, container in enumerate(pod.get("containers") or []):
        errors += _resources(f"{path}.containers[{index}].resources", container.get("resources"))
        for item in container.get("env") or []:
            if not re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", item.get("name", "")):
                errors.append(f'{path}.containers[{index}].env[].name: Invalid value: "{item}"')
    return errors


def _toleration(path: str, toleration: dict[str, Any]) -> list[str]:
    errors = []
    key, operator = toleration.get("key") or "", toleration.get("operator") or "Equal"
    if key and not _qualified(key):
        errors.append(f'{path}.key: Invalid value: "{key}"')
    if not key and operator != "Exists":
        errors.append(
            f'{path}.operator: Invalid value: "{operator}": must be Exists when key is empty'
        )
    if operator == "Exists" and toleration.get("value"):
        errors.append(
            f'{path}.operator: Invalid value: "{toleration["value"]}": value must be empty when '
            "`operator` is 'Exists'"
        )
    if toleration.get("tolerationSeconds") is not None and toleration.get("effect") != "NoExecute":
        errors.append(
            f'{path}.effect: Invalid value: "{toleration.get("effect")}": effect must be '
            "'NoExecute' when `tolerationSeconds` is set"
        )
    return errors


def _resources(path: str, resources: dict[str, Any] | None) -> list[str]:
    errors = []
    amounts: dict[str, dict[str, Decimal]] = {}
    for part in ("requests", "limits"):
        for name, value in ((resources or {}).get(part) or {}).items():
            amount = _quantity(str(value))
            if not _qualified(name):
                errors.append(f'{path}.{part}[{name}]: Invalid value: "{name}"')
            if amount is None:
                errors.append(
                    f'{path}.{part}[{name}]: Invalid value: "{value}": quantities must match '
                    "the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                )
            else:
                amounts.setdefault(part, {})[name] = amount
    for name, wanted in amounts.get("requests", {}).items():
        limit = amounts.get("limits", {}).get(name)
        if limit is not None and wanted > limit:
            errors.append(
                f'{path}.requests: Invalid value: "{wanted}": must be less than or equal to '
                f"{name} limit of {limit}"
            )
    return errors


def _quantity(text: str) -> Decimal | None:
    match = QUANTITY.fullmatch(text)
    if match is None:
        return None
    number, suffix = match.groups()
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * Decimal(10) ** int(suffix[1:])
        return Decimal(number) * Decimal(SUFFIX[suffix])
    except (KeyError, ArithmeticError, ValueError):
        return None
