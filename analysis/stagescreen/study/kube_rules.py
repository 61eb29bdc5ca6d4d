"""Kubernetes' own rules for every spec value that becomes part of a Kubernetes object.

A study's names, labels, tolerations, quantities and resource names end up in Job and Pod
manifests; a value the API server would refuse (422) must be refused earlier, by the model,
so `stagescreen validate`, the admission webhook and the CRD agree and no Job is ever
half-created. The rules are those of the API server's validation (apimachinery's
`IsDNS1123Label`, `IsQualifiedName`, `IsValidLabelValue`, `resource.ParseQuantity`, core
validation of tolerations and of requests against limits), written once here and used as
pydantic types by `study.spec`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUANTITY = r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$"
_POSITIVE_QUANTITY = (
    r"^\+?(0*[1-9]\d*(\.\d*)?|0*\.\d*[1-9]\d*)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$"
)
_SUFFIXES: dict[str, int | Decimal] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip


def _dns_subdomain(value: str) -> str:
    if len(value) > DNS_SUBDOMAIN_MAX or not re.fullmatch(_DNS_SUBDOMAIN, value):
        raise ValueError(
            f"must be a DNS subdomain: lowercase letters, digits, '-' and '.', starting and "
            f"ending with a letter or digit, at most {DNS_SUBDOMAIN_MAX} characters (got {value!r})"
        )
    return value


def namespace(value: str) -> str:
    """`value` if it is a namespace Kubernetes accepts (a DNS label), else ValueError saying
    what one looks like; `metadata.namespace` and `stagescreen manifests --namespace` both."""
    if len(value) > DNS_LABEL_MAX or not re.fullmatch(_DNS_LABEL, value):
        raise ValueError(
            f"must be a Kubernetes namespace: lowercase letters, digits and '-', starting and "
            f"ending with a letter or digit, at most {DNS_LABEL_MAX} characters, e.g. ml-team "
            f"(got {value!r})"
        )
    return value


def _qualified_name(value: str) -> str:
    """`name` or `prefix/name`, as label keys, annotation keys and resource names are."""
    prefix, slash, name = value.rpartition("/")
    if slash:
        _dns_subdomain(prefix)
    if len(name) > DNS_LABEL_MAX or not re.fullmatch(_NAME_PART, name):
        raise ValueError(
            f"must be a qualified name such as nvidia.com/gpu.product: an optional DNS "
            f"prefix and '/', then at most {DNS_LABEL_MAX} letters, digits, '-', '_' or '.', "
            f"starting and ending with a letter or digit (got {value!r})"
        )
    return value


def _label_value(value: str) -> str:
    if len(value) > LABEL_VALUE_MAX or not re.fullmatch(f"({_NAME_PART})?", value):
        raise ValueError(
            f"must be a label value: at most {LABEL_VALUE_MAX} letters, digits, '-', '_' or "
            f"'.', starting and ending with a letter or digit (got {value!r})"
        )
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", value):
        raise ValueError(
            f"must be an environment variable name: letters, digits, '_', '-' or '.', not "
            f"starting with a digit (got {value!r})"
        )
    return value


def _secret_key(value: str) -> str:
    if len(value) > DNS_SUBDOMAIN_MAX or not re.fullmatch(r"[-._a-zA-Z0-9]+", value):
        raise ValueError(f"must be a Secret key: letters, digits, '-', '_' or '.' (got {value!r})")
    return value


def quantity_value(text: str) -> Decimal:
    """The amount a Kubernetes quantity (`500m`, `64Gi`, `1.5`, `2e3`) stands for."""
    if not re.fullmatch(_QUANTITY, text):
        raise ValueError(
            "must be a Kubernetes quantity such as 8, 500m, 64Gi or 1.5G; memory is written "
            f"Gi or G, never GB (got {text!r})"
        )
    match = re.fullmatch(r"([+-]?[\d.]+)(.*)", text)
    assert match is not None
    number, suffix = match.groups()
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * Decimal(10) ** int(suffix[1:])
        return Decimal(number) * Decimal(_SUFFIXES[suffix])
    except (InvalidOperation, OverflowError) as error:  # pragma: no cover - regex guards it
        raise ValueError(f"must be a Kubernetes quantity (got {text!r})") from error


def _quantity(value: Any) -> Any:
    """A YAML integer is a quantity too (`cpu: 8`), as the CRD's int-or-string takes it; a
    YAML float is not (the API server refuses `cpu: 0.5`: write `500m` or `"0.5"`)."""
    if isinstance(value, float):
        raise ValueError(f"write a fraction as a string or in milli-units, e.g. 500m (got {value})")
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _non_negative_quantity(text: str) -> str:
    if quantity_value(text) < 0:
        raise ValueError(f"must not be negative (got {text!r})")
    return text


def _positive_quantity(text: str) -> str:
    if quantity_value(text) <= 0:
        raise ValueError(f"must be positive (got {text!r})")
    return text


def _string(pattern: str, max_length: int | None = None) -> dict[str, Any]:
    """The JSON schema of a rule, so the CRD and the chart's values schema refuse what the
    model refuses (the validators above give the messages)."""
    schema: dict[str, Any] = {"type": "string", "pattern": pattern}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)]
"""A name the project uses inside Job names and label values (stages, pools, studies): a
DNS-1123 label, kept to 40 characters so `<study>-<run id>` stays readable."""
DnsSubdomain = Annotated[
    str,
    AfterValidator(_dns_subdomain),
    WithJsonSchema(_string(f"^{_DNS_SUBDOMAIN}$", DNS_SUBDOMAIN_MAX)),
]
Namespace = Annotated[
    str, AfterValidator(namespace), WithJsonSchema(_string(f"^{_DNS_LABEL}$", DNS_LABEL_MAX))
]
QualifiedName = Annotated[
    str,
    AfterValidator(_qualified_name),
    WithJsonSchema(_string(rf"^({_DNS_SUBDOMAIN}/)?{_NAME_PART}$", DNS_SUBDOMAIN_MAX + 64)),
]
LabelValue = Annotated[
    str,
    AfterValidator(_label_value),
    WithJsonSchema(_string(f"^({_NAME_PART})?$", LABEL_VALUE_MAX)),
]
EnvName = Annotated[
    str, AfterValidator(_env_name), WithJsonSchema(_string(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"))
]
SecretKey = Annotated[
    str,
    AfterValidator(_secret_key),
    WithJsonSchema(_string(r"^[-._a-zA-Z0-9]+$", DNS_SUBDOMAIN_MAX)),
]


def _int_or_string(pattern: str, **bounds: int) -> dict[str, Any]:
    """The CRD's schema of a quantity: an integer or a string matching `pattern` (integer
    `bounds`, such as a minimum, bind the integer form)."""
    return {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        **bounds,
        "pattern": pattern,
    }


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    AfterValidator(_non_negative_quantity),
    WithJsonSchema(_int_or_string(_QUANTITY)),
]
PositiveQuantity = Annotated[
    str,
    BeforeValidator(_quantity),
    AfterValidator(_positive_quantity),
    WithJsonSchema(_int_or_string(_POSITIVE_QUANTITY, minimum=1)),
]
"""A size that must be more than zero (a /dev/shm limit)."""
