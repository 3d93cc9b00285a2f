"""Team mode against real servers: PostgreSQL for Optuna and as MLflow's backend store, an MLflow tracking
server with artifact proxying, all on localhost (``make test-services``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import services
from repo_copy import run, tiny_repo

pytestmark = pytest.mark.services
if services.missing():
    pytestmark = [pytest.mark.services, pytest.mark.skip(reason=services.missing())]


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    work = tmp_path_factory.mktemp("team")
    with services.postgres(("optuna", "mlflow")) as pg, services.mlflow_server(pg.url("mlflow"), work) as ml:
        yield pg, ml


def test_two_tuning_workers_and_a_train_stage_share_the_team_servers(team, tmp_path):
    import mlflow
    import optuna
    from optuna.trial import TrialState

    pg, server = team
    assert services.listening_addresses(server.port) == {"127.0.0.1"}
    assert services.listening_addresses(pg.port) == {"127.0.0.1"}

    def team_mode(params):
        params["mlflow"]["tracking_uri"] = server.url
        params["tuning"]["storage"] = pg.url("optuna")
        params["tuning"]["workers"] = 2
        params["tuning"]["budget"]["n_trials"] = 4

    work = tmp_path / "repo"
    _, env = tiny_repo(work, ["gru"], team_mode)
    built = run(["dvc", "repro", "train@gru"], work, env)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "2 worker processes on postgresql" in built.stderr + built.stdout

    # the study lives in PostgreSQL: exactly n_trials counted trials, unique numbers, two workers, no duplicate draws
    names = optuna.study.get_all_study_names(storage=pg.url("optuna"))
    assert len(names) == 1 and names[0].startswith("thawcast-gru-")
    study = optuna.load_study(study_name=names[0], storage=pg.url("optuna"))
    counted = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4 and not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    drawn = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(set(drawn)) == len(drawn), "two workers drew the same trial"

    # MLflow: every trial is a nested run on the server; the registered model's alias holds the weights train wrote
    client = mlflow.MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    for t in study.trials:
        assert client.get_run(t.user_attrs["mlflow_run_id"]).data.tags["mlflow.parentRunId"] == parent.info.run_id
    recorded = json.loads((work / "data" / "models" / "gru" / "registration.json").read_text())
    version = client.get_model_version_by_alias("thawcast-gru", "champion")
    assert version.tags["thawcast.weights_sha256"] == recorded["weights_sha256"]

    # artifacts went through the server (proxied) into its destination, and nothing into a local store
    assert version.source.startswith(("models:/", "mlflow-artifacts:")) or "mlflow-artifacts" in version.source
    mlflow.set_tracking_uri(server.url)
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/thawcast-gru/{version.version}",
                                                dst_path=str(tmp_path / "download"))
    assert any(p.name == "MLmodel" for p in Path(local).rglob("MLmodel"))
    assert any(server.artifacts.rglob("MLmodel"))
    assert not (work / "mlruns" / "mlflow.db").exists() and not (work / "mlruns" / "artifacts").exists()
    assert not (work / "mlruns" / "optuna.journal").exists()
