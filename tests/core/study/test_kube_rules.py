"""Kubernetes' own rules in the model: what the API server would refuse in a Job never
passes `validate`, and the CRD accepts what the model accepts."""

from __future__ import annotations

from decimal import Decimal

import jsonschema
import pytest
from crdschema import openapi
from pydantic import TypeAdapter, ValidationError

from stagescreen.study.kube_rules import LabelValue, QualifiedName, Quantity, quantity_value


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("8", Decimal(8)),
        ("500m", Decimal("0.5")),
        ("64Gi", Decimal(64 * 2**30)),
        ("1.5G", Decimal("1.5e9")),
        ("2e3", Decimal(2000)),
        (".5", Decimal("0.5")),
    ],
)
def test_a_quantity_reads_as_the_api_server_reads_it(text: str, amount: Decimal) -> None:
    assert quantity_value(text) == amount


QUANTITIES = [8, "8", "500m", "64Gi", "1.5G", "2e3", "64GB", "64 Gi", "1.5.2", "Gi", 0.5, "-1Gi"]


@pytest.mark.parametrize("value", QUANTITIES)
def test_the_crd_and_the_model_agree_on_every_quantity(value: object) -> None:
    """`cpu: 8` is valid for both; `memory: 64GB` and `cpu: 0.5` for neither."""
    schema = openapi()["properties"]["spec"]["properties"]["trainer"]["properties"]["resources"]
    node = schema["properties"]["requests"]["additionalProperties"]
    try:
        jsonschema.validate(value, node)
        crd_accepts = True
    except jsonschema.ValidationError:
        crd_accepts = False
    try:
        TypeAdapter(Quantity).validate_python(value)
        model_accepts = True
    except ValidationError:
        model_accepts = False
    if value == "-1Gi":  # the schema has no sign rule; the model refuses a negative amount
        assert crd_accepts and not model_accepts
    else:
        assert crd_accepts == model_accepts, value


@pytest.mark.parametrize(
    ("value", "valid"),
    [("a100", True), ("", True), ("a" * 63, True), ("a" * 64, False), ("best-", False),
     ("x y", False), ("v1.2_3", True)],
)  # fmt: skip
def test_label_values_follow_the_api_server(value: str, valid: bool) -> None:
    accepted = True
    try:
        TypeAdapter(LabelValue).validate_python(value)
    except ValidationError:
        accepted = False
    assert accepted is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [("nvidia.com/gpu", True), ("pool", True), ("node.kubernetes.io/instance-type", True),
     ("NVIDIA.com/gpu", False), ("/gpu", False), ("a/b/c", False), ("gpu memory", False)],
)  # fmt: skip
def test_qualified_names_follow_the_api_server(value: str, valid: bool) -> None:
    accepted = True
    try:
        TypeAdapter(QualifiedName).validate_python(value)
    except ValidationError:
        accepted = False
    assert accepted is valid
