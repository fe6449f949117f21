"""``mvc import mlflow`` against MLflow file stores and model folders made by the real ``mlflow``
client (mlflow-skinny, in the test extra; under CI=true a missing mlflow fails)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from mvc.errors import InvalidInput
from mvc.formats.mlmodel import parse_mlmodel


def _mlflow() -> Any:
    try:
        with warnings.catch_warnings():  # MLflow warns about its own type hints on import
            warnings.simplefilter("ignore")
            import mlflow
            import mlflow.pyfunc  # noqa: F401  (needs pandas)
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            raise  # CI installs mlflow (the test extra): missing is a failure
        pytest.skip("mlflow is not installed (pip install -e '.[test]' installs it)")
    return mlflow


@pytest.fixture
def tracking(tmp_path: Path, mvc_env, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A file tracking store with one run that logged a pyfunc model with params, metrics, tags
    and a dataset input, registered as ``bert`` version 1 with alias ``champion``."""
    mlflow = _mlflow()
    import pandas as pd

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(bytes(range(256)) * 16)

    # MLflow's own notices while it builds the fixture (type hints, environment inference) are
    # not what these tests are about; the suite turns warnings into errors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")

        class Echo(mlflow.pyfunc.PythonModel):
            def predict(
                self, context: Any, model_input: list[str], params: Any = None
            ) -> list[str]:
                return model_input

        run, info = _log_run(mlflow, pd, Echo, weights)
    mlflow.tracking.MlflowClient().set_registered_model_alias("bert", "champion", "1")
    store = tmp_path / "work"
    store.mkdir()
    monkeypatch.chdir(store)
    from mvc.repo import Repo

    Repo.init(str(store))
    return {"uri": uri, "run_id": run.info.run_id, "model_uri": info.model_uri, "store": store}


def _log_run(mlflow: Any, pd: Any, model_class: Any, weights: Path) -> tuple[Any, Any]:
    with mlflow.start_run(run_name="finetune-7") as run:
        mlflow.log_params({"lr": 0.001, "epochs": 3})
        mlflow.log_metrics({"accuracy": 0.91, "loss": 0.23})
        mlflow.set_tag("team", "nlp")
        frame = pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})
        mlflow.log_input(
            mlflow.data.from_pandas(frame, source="s3://corp/squad", name="squad"),
            context="training",
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model_class(),
            artifacts={"weights": str(weights)},
            registered_model_name="bert",
        )
    return run, info


def _show(run_mvc, spec: str, cwd: Path) -> dict[str, Any]:
    done = run_mvc("show", spec, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_registered_model_version_imports_with_its_run(tracking, run_mvc):
    done = run_mvc(
        "import",
        "mlflow",
        "models:/bert/1",
        "--tracking-uri",
        tracking["uri"],
        "--json",
        cwd=tracking["store"],
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["mapped"]["registered_model"] == "bert/1"
    shown = _show(run_mvc, "bert", tracking["store"])
    assert shown["params"] == {"lr": "0.001", "epochs": "3"}  # MLflow keeps params as text
    assert shown["metrics"] == {"accuracy": 0.91, "loss": 0.23}
    facts = shown["lineage"]["mlflow"]
    assert facts["run_id"] == tracking["run_id"]
    assert facts["registered_model"]["name"] == "bert"
    assert facts["registered_model"]["aliases"] == ["champion"]
    assert facts["run_tags"] == {"team": "nlp"}
    assert facts["run_name"] == "finetune-7"
    assert "python_function" in facts["flavors"]
    (squad,) = shown["lineage"]["datasets"]
    assert squad["name"] == "squad" and squad["uri"] == "s3://corp/squad"
    assert squad["hash"].startswith("mlflow:") and squad["context"] == "training"
    files = run_mvc("ls", "bert", cwd=tracking["store"]).stdout.split()
    assert "MLmodel" in files and "artifacts/weights.bin" in files
    assert "registered_model_meta" not in files  # MLflow's download marker, not the model's


def test_an_alias_resolves_like_the_registry_does(tracking, run_mvc):
    done = run_mvc(
        "import",
        "mlflow",
        "models:/bert@champion",
        "--tracking-uri",
        tracking["uri"],
        "--model",
        "bert-champion",
        cwd=tracking["store"],
    )
    assert done.returncode == 0, done.stderr
    shown = _show(run_mvc, "bert-champion", tracking["store"])
    assert shown["lineage"]["mlflow"]["registered_model"]["version"] == "1"


def test_a_local_model_folder_round_trips_byte_identical(tracking, run_mvc, tmp_path, monkeypatch):
    mlflow = _mlflow()
    folder = tmp_path / "downloaded"
    mlflow.artifacts.download_artifacts(tracking["model_uri"], dst_path=str(folder))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set_tracking_uri exports it
    done = run_mvc("import", "mlflow", str(folder), "--model", "local", cwd=tracking["store"])
    assert done.returncode == 0, done.stderr
    shown = _show(run_mvc, "local", tracking["store"])
    assert shown["lineage"]["mlflow"]["run_id"] == tracking["run_id"]
    assert shown["params"] == {}  # no tracking URI: the run is named, not looked up
    out = tmp_path / "out"
    assert run_mvc("checkout", "local", "--to", str(out), cwd=tracking["store"]).returncode == 0
    original = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    restored = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert restored == original
    # and MLflow itself loads what mvc gives back
    assert mlflow.pyfunc.load_model(str(out)).metadata.run_id == tracking["run_id"]


def test_the_run_is_looked_up_when_the_tracking_uri_is_known(tracking, run_mvc, tmp_path):
    mlflow = _mlflow()
    folder = tmp_path / "downloaded"
    mlflow.artifacts.download_artifacts(tracking["model_uri"], dst_path=str(folder))
    done = run_mvc(
        "import",
        "mlflow",
        str(folder),
        "--model",
        "local",
        cwd=tracking["store"],
        env={"MLFLOW_TRACKING_URI": tracking["uri"]},
    )
    assert done.returncode == 0, done.stderr
    assert _show(run_mvc, "local", tracking["store"])["metrics"]["accuracy"] == 0.91


def test_a_missing_model_version_is_a_clear_error(tracking, run_mvc):
    done = run_mvc(
        "import",
        "mlflow",
        "models:/bert/9",
        "--tracking-uri",
        tracking["uri"],
        cwd=tracking["store"],
    )
    assert done.returncode == 1
    assert "models:/bert/9" in done.stderr and "Traceback" not in done.stderr


def test_a_folder_without_mlmodel_is_refused(tracking, run_mvc, tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "w.bin").write_bytes(b"x")
    done = run_mvc("import", "mlflow", str(tmp_path / "plain"), cwd=tracking["store"])
    assert done.returncode == 1 and "no MLmodel file" in done.stderr


def test_mlmodel_parsing_refuses_what_is_not_an_mlmodel():
    with pytest.raises(InvalidInput, match="no 'flavors' mapping"):
        parse_mlmodel("run_id: abc\n")
    with pytest.raises(InvalidInput, match="run_id .* is malformed"):
        parse_mlmodel("flavors: {}\nrun_id: '../../x'\n")
    facts = parse_mlmodel("flavors: {transformers: {}, python_function: {}}\nrun_id: r1\n")
    assert facts.flavors == ("python_function", "transformers") and facts.run_id == "r1"


def test_export_mlflow_gives_back_a_folder_mlflow_loads(tracking, run_mvc, make_model, tmp_path):
    mlflow = _mlflow()
    store = tracking["store"]
    imported = run_mvc(
        "import", "mlflow", "models:/bert/1", "--tracking-uri", tracking["uri"], cwd=store
    )
    assert imported.returncode == 0, imported.stderr
    assert run_mvc("channel", "set", "bert", "prod", "main", cwd=store).returncode == 0
    out = tmp_path / "exported"
    done = run_mvc(
        "export", "bert", "prod", "--format", "mlflow", "--to", str(out), "--json", cwd=store
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["details"]["flavors"]["stable"] == ["python_function"]
    loaded = mlflow.pyfunc.load_model(str(out / "stable"))
    assert loaded.metadata.run_id == tracking["run_id"]
    # a version that is not an MLflow model is refused, not dressed up as one
    make_model(store / "models" / "plain")
    assert run_mvc("commit", "models/plain", "-m", "x", cwd=store).returncode == 0
    assert run_mvc("channel", "set", "plain", "prod", "main", cwd=store).returncode == 0
    refused = run_mvc(
        "export", "plain", "prod", "--format", "mlflow", "--to", str(tmp_path / "p"), cwd=store
    )
    assert refused.returncode == 2 and "is not an MLflow model" in refused.stderr
