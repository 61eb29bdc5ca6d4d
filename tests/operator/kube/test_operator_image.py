"""The operator image, built for real, runs what its pods run: `stagescreen` as user 10001,
and an analysis Job's `stagescreen analyse` of a stored stage, against the test API server and
SeaweedFS (both on the host's loopback, which the container shares)."""

from __future__ import annotations

from pathlib import Path

import yaml
from apiserver import Running
from buildah import Image
from kube_cluster import GROUP, NAMESPACE, PLURAL, STUDY, VERSION, study_text
from kubernetes import client, config
from seaweed import S3Bucket

from stagescreen import __version__
from stagescreen.statistics import synthetic
from stagescreen.storage.keys import OUTCOME, RESULT, StudyKeys
from stagescreen.storage.publish import publish_spec
from stagescreen.storage.store import open_store
from stagescreen.study.parse import parse_study
from stagescreen_operator.snapshot import snapshot


def test_the_image_runs_stagescreen_as_an_unprivileged_user(operator_image: Image) -> None:
    image = operator_image.config()
    assert image["Entrypoint"] == ["stagescreen"] and image["Cmd"] == ["operator"]
    assert image["User"] == "10001"
    done = operator_image.run("--version", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"stagescreen {__version__}"


def test_an_analysis_job_analyses_a_stored_stage_inside_the_image(
    operator_image: Image, apiserver: Running, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    # The study in the API server; in S3 its spec (as the operator publishes it) and its screen
    # stage's runs, ended and recorded.
    text = study_text(STUDY, s3_bucket)
    kube = tmp_path / "kube"
    kube.mkdir(mode=0o755)
    kubeconfig = apiserver.write_kubeconfig(kube / "config")
    kubeconfig.chmod(0o644)
    api = config.new_client_from_config(str(kubeconfig))
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, yaml.safe_load(text))
    study = parse_study(yaml.safe_load(text))
    store = open_store(study.spec.storage.root())
    publish_spec(store, study)
    screen = [run for run in snapshot(store, study).decision.planned if run.stage == "screen"]
    model = synthetic.ResponseModel(effects={"A": -0.05}, seed_sd=0.01)
    records = synthetic.simulate_runs(screen, model, study.spec.metric.name)
    for record in records.to_dict("records"):
        store.put_json(StudyKeys("tiny").run(record["run_id"], RESULT), record)

    done = operator_image.run(
        "analyse",
        "--namespace",
        NAMESPACE,
        "tiny",
        "screen",
        env={**s3_bucket.endpoint.env(), "KUBECONFIG": "/kube/config"},
        volumes=[f"{kube}:/kube:ro"],
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "stage screen:" in done.stdout and "report: s3://" in done.stdout
    status = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "tiny")
    assert status["status"]["stages"]["screen"]["summary"]
    assert store.exists(StudyKeys("tiny").stage("screen", OUTCOME))
