"""``finetune`` and ``eval_robust`` on a small prepared corpus with a random-init tiny CLIP."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from medran.contracts import EvalRobustPaths, FinetunePaths, read_run_id, registered_model_name
from medran.errors import InputError
from medran.methods import METHODS
from medran.models.factory import create_clip, load_local_dir, save_local_dir
from medran.models.finetune import weights_hash
from medran.models.finetuned import WEIGHTS_FILE as WEIGHTS
from medran.models.finetuned import load_finetuned, seed_dir
from medran.params import FinetuneParams, ParamsError, deep_merge, parse_params
from medran.pipeline import eval_robust, finetune
from medran.tasks import make_task
from medran.tasks.features import encode_split
from tests.helpers import project_params
from tests.unit.test_params import with_change

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "medran-test"
PRETRAIN_RUN = "pretrain-run-0"
# Tiny and fast: one-step (FGSM-RS) training attacks, a narrow co-attention head.
FINETUNE = {
    "tasks": ["cls", "vqa"],
    "methods": ["lp", "nmtune", "ran"],
    "seeds": [0, 1],
    "epochs": 2,
    "batch_size": 8,
    "vqa": {"depth": 1, "width": 32, "heads": 4},
    "ran": {"steps": 1, "step_size": 5.0},
}
ROBUST_CHANGES = {
    "eps": [2.0, 8.0],
    "large_eps": 64.0,
    "presets": {"default": {"max_examples": 8, "apgd": {"steps": 3}, "pgd": {"steps": 3}}},
}
ALL = project_params(experiment=EXPERIMENT, finetune=FINETUNE, eval_robust=ROBUST_CHANGES)
PARAMS, ROBUST = ALL.finetune, ALL.eval_robust
CLS_METHODS = ["lp", "nmtune", "ran", "fare", "tecoa"]
VQA_METHODS = ["lp", "fare", "tecoa"]
ENCODER_METHODS = ["fare", "tecoa"]  # they tune (a copy of) the encoder


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real SQLite MLflow store shared by the module's runs."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny CLIP exported as ``pretrain@0.0`` would export it."""
    folder = tmp_path_factory.mktemp("pretrain") / "0.0"
    save_local_dir(create_clip("medran-tiny", seed=0), folder)
    (folder / "run.json").write_text(json.dumps({"run_id": PRETRAIN_RUN}))
    return folder


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


def finetune_run(
    data_root: Path, pretrain_dir: Path, work: Path, task: str, method: str, **changes
) -> dict[str, float]:
    params = project_params(experiment=EXPERIMENT, finetune=deep_merge(FINETUNE, changes))
    paths = FinetunePaths(
        data=data_root,
        pretrain=pretrain_dir,
        out=work / "models" / f"{task}-{method}",
        cache=work / "cache",
        metrics=work / "metrics.json",
        outcomes=work / "outcomes" / f"{task}-{method}.npz",
    )
    return finetune.run(params, paths=paths, level=0.0, task=task, method=method)


def robust_run(
    data_root: Path, pretrain_dir: Path, models: Path, tasks: list[str], methods: list[str]
) -> dict[str, float]:
    params = project_params(
        experiment=EXPERIMENT,
        finetune=FINETUNE | {"tasks": tasks, "methods": methods},
        eval_robust=ROBUST_CHANGES,
    )
    outcomes = models / f"outcomes-{'-'.join(tasks)}.npz"
    paths = EvalRobustPaths(data_root, pretrain_dir, models, models / "metrics.json", outcomes)
    return eval_robust.run(params, paths=paths, level=0.0)


@pytest.fixture(scope="module")
def finetuned(
    data_root: Path, pretrain_dir: Path, work: Path, store: str
) -> dict[tuple[str, str], dict[str, float]]:
    runs = [("cls", m) for m in CLS_METHODS] + [("vqa", m) for m in VQA_METHODS]
    return {key: finetune_run(data_root, pretrain_dir, work, *key) for key in runs}


def test_finetune_writes_models_metrics_and_lineage(
    finetuned: dict, data_root: Path, work: Path, store: str
) -> None:
    for (task, method), metrics in finetuned.items():
        assert 0.0 <= metrics["test.accuracy"] <= 1.0 and metrics["n_seeds"] == 2
        assert metrics["test.accuracy"] == pytest.approx(
            (metrics["seed-0.test.accuracy"] + metrics["seed-1.test.accuracy"]) / 2
        )
        if method in ENCODER_METHODS and task == "cls":  # the encoder trains: every parameter
            assert metrics["trainable_fraction"] == 1.0
        elif method in ENCODER_METHODS:  # VQA's patch tokens leave the projection unused
            assert 0.9 < metrics["trainable_fraction"] < 1.0
        else:
            assert 0 < metrics["trainable_fraction"] < 1 and metrics["trainable_params"] > 0
        assert metrics["wall_time_s"] > 0 and metrics["seed-1.wall_time_s"] > 0
        for seed in PARAMS.seeds:
            folder = seed_dir(work / "models" / f"{task}-{method}", seed)
            config = json.loads((folder / "config.json").read_text())
            assert (config["task"], config["method"], config["seed"]) == (task, method, seed)
            weights = load_file(folder / WEIGHTS)
            parts = {k.split(".")[0] for k in weights}
            assert parts <= {"encoder", "rectifier", "head"} and "head" in parts
            assert ("rectifier" in parts) == METHODS[method].needs_rectifier
            assert ("encoder" in parts) == (method in ENCODER_METHODS)
            run = mlflow.get_run(json.loads((folder / "run.json").read_text())["run_id"])
            stage = f"finetune@0.0-{task}-{method}"
            tags = run.data.tags
            assert run.info.status == "FINISHED" and run.info.run_name == f"{stage} seed{seed}"
            assert tags["stage"] == stage and tags["noise_level"] == "0.0"
            assert (tags["task"], tags["method"], tags["seed"]) == (task, method, str(seed))
            assert tags["upstream_run_id"] == PRETRAIN_RUN and "git_commit" in tags
            assert tags["data_md5.prepared"].endswith(".dir")
            assert tags["data_md5.pretrain"].endswith(".dir")
            values = run.data.metrics
            assert values["trainable_fraction"] == pytest.approx(metrics["trainable_fraction"])
            assert values["test.accuracy"] == metrics[f"seed-{seed}.test.accuracy"]
            history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
            assert len(history) >= PARAMS.epochs  # per-step losses
            # The first seed is the registered MLflow Model; the others keep their folder.
            artifacts = mlflow.artifacts.list_artifacts(
                run_id=run.info.run_id, artifact_path="model"
            )
            kept = "model/MLmodel" if seed == PARAMS.seeds[0] else "model/trainable.safetensors"
            assert kept in {a.path for a in artifacts}
        # Every seed's per-example outcomes, behind its accuracy, for the report's intervals.
        with np.load(work / "outcomes" / f"{task}-{method}.npz") as outcomes:
            n_test = len(_test_rows(data_root, task))
            assert outcomes["correct"].shape == (len(PARAMS.seeds), n_test)
            for i, seed in enumerate(PARAMS.seeds):
                seed_accuracy = metrics[f"seed-{seed}.test.accuracy"]
                assert outcomes["correct"][i].mean() == pytest.approx(seed_accuracy)
            assert outcomes["prior"].mean() == pytest.approx(metrics["prior_accuracy"])
            if task == "vqa":  # answered with another example's image
                blind = outcomes["blind"].mean()
                assert blind == pytest.approx(metrics["test.blind_accuracy"])
            else:
                assert outcomes["scores"].shape[:2] == outcomes["correct"].shape
    # Light-weight: a linear probe trains far fewer parameters than the rectifier methods,
    # which train far fewer than the methods that tune the encoder.
    trainable = {m: finetuned[("cls", m)]["trainable_params"] for m in CLS_METHODS}
    assert trainable["lp"] < trainable["nmtune"] < trainable["fare"]
    assert trainable["tecoa"] > 0.9 * trainable["fare"]  # both: the whole encoder and a head


def test_ran_without_adversarial_terms_is_nmtune(
    finetuned: dict, data_root: Path, pretrain_dir: Path, work: Path, store: str
) -> None:
    off = {"w_adv": 0.0, "w_rect": 0.0}
    metrics = finetune_run(data_root, pretrain_dir, work / "off", "cls", "ran", ran=off)
    nmtune = finetuned[("cls", "nmtune")]
    # Exactly the same scores (NaN where a metric is undefined on this tiny split) ...
    scores = [k for k in nmtune if k.startswith(("test.", "val.", "seed-")) and "wall" not in k]
    assert len(scores) > 20
    np.testing.assert_equal({k: metrics[k] for k in scores}, {k: nmtune[k] for k in scores})
    # ... because exactly the same weights.
    for seed in PARAMS.seeds:
        ours = load_file(seed_dir(work / "off" / "models" / "cls-ran", seed) / WEIGHTS)
        theirs = load_file(seed_dir(work / "models" / "cls-nmtune", seed) / WEIGHTS)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
        # The adversarial terms do change the result (so the comparison can fail).
        adversarial = load_file(seed_dir(work / "models" / "cls-ran", seed) / WEIGHTS)
        assert not all(torch.equal(adversarial[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("method", ["lp", *ENCODER_METHODS])
def test_saved_model_rebuilds_with_the_same_predictions(
    finetuned: dict, data_root: Path, pretrain_dir: Path, work: Path, method: str
) -> None:
    task = make_task("vqa", data_root / "prepared")
    clip = load_local_dir(pretrain_dir)
    model = load_finetuned(seed_dir(work / "models" / f"vqa-{method}", 0), clip, task)
    test = task.with_context(task.load_split("test", clip.image_size), clip)
    batch = torch.utils.data.default_collate([test[i] for i in range(len(test))])
    with torch.no_grad():
        logits = model(batch["images"], batch["context"])
    accuracy = task.metrics(logits, test.targets, test.rows)["accuracy"]
    assert accuracy == pytest.approx(finetuned[("vqa", method)]["seed-0.test.accuracy"])
    other = create_clip("medran-tiny", seed=1)
    with pytest.raises(InputError, match="another pre-trained model"):
        load_finetuned(seed_dir(work / "models" / f"vqa-{method}", 0), other, task)


@pytest.mark.parametrize("method", ENCODER_METHODS)
def test_a_tuned_encoder_is_evaluated_on_its_own_features(
    finetuned: dict, data_root: Path, pretrain_dir: Path, work: Path, method: str
) -> None:
    """Clean test scores come from the tuned encoder's features, not the cached frozen ones."""
    task = make_task("cls", data_root / "prepared", **finetune.task_options(PARAMS, "cls"))
    clip = load_local_dir(pretrain_dir)
    model = load_finetuned(seed_dir(work / "models" / f"cls-{method}", 0), clip, task)
    test = task.load_split("test", clip.image_size)

    def scores(encoder: torch.nn.Module) -> np.ndarray:
        z = encode_split(encoder, test.images, 64)[test.image_index]
        with torch.no_grad():
            return task.outcomes(model.forward_features(z), test.targets)["scores"]

    with np.load(work / "outcomes" / f"cls-{method}.npz") as outcomes:
        written = outcomes["scores"][0]  # seed 0
    np.testing.assert_allclose(written, scores(model.encoder), rtol=0, atol=1e-5)
    assert not np.allclose(written, scores(task.build_encoder(clip)), rtol=0, atol=1e-5)
    # The pre-trained model the level shares is unchanged by the tuning of its seeds.
    assert weights_hash(load_local_dir(pretrain_dir).model) == weights_hash(clip.model)


@pytest.mark.parametrize(("task", "method"), [("cls", "ran"), ("vqa", "lp"), ("vqa", "fare")])
def test_registered_model_predicts_what_the_stage_predicted(
    finetuned: dict, data_root: Path, work: Path, store: str, task: str, method: str
) -> None:
    """The first seed's model, loaded from the registry as a pyfunc and given the test files'
    bytes (and questions), gives the stage's own test predictions."""
    name = registered_model_name(0.0, task, method)
    run_id = read_run_id(seed_dir(work / "models" / f"{task}-{method}", 0))
    # Other tests here register more versions under the name: take this run's.
    (version,) = mlflow.MlflowClient().search_model_versions(
        f"name = '{name}' and run_id = '{run_id}'"
    )
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    assert model.metadata.run_id == run_id
    names = [c.name for c in model.metadata.get_input_schema().inputs]
    assert names == (["image", "question"] if task == "vqa" else ["image"])
    tasks = make_task(task, data_root / "prepared", **finetune.task_options(PARAMS, task))
    rows = tasks.rows("test")
    frame = pd.DataFrame(
        {"image": [(data_root / "prepared" / p).read_bytes() for p in rows["image_path"]]}
    )
    if task == "vqa":
        frame["question"] = rows["question"]
    predicted = model.predict(frame)["prediction"].tolist()
    with np.load(work / "outcomes" / f"{task}-{method}.npz") as outcomes:
        expected = tasks.decode(torch.as_tensor(outcomes["pred"][0]))  # seed 0
    assert len(set(expected)) > 1  # the comparison can fail
    assert predicted == expected
    with pytest.raises(InputError, match="column 'image' must hold the bytes"):
        model.predict(frame.assign(image=rows["image_path"]))  # paths, not file contents


def test_eval_robust_attacks_every_model_and_logs_one_run_each(
    finetuned: dict, data_root: Path, pretrain_dir: Path, work: Path, store: str
) -> None:
    metrics = {}
    for task, methods in (("cls", CLS_METHODS), ("vqa", VQA_METHODS)):
        metrics |= robust_run(data_root, pretrain_dir, work / "models", [task], methods)
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT],
        filter_string="tags.stage = 'eval_robust@0.0'",
        output_format="list",
    )
    n_models = (len(CLS_METHODS) + len(VQA_METHODS)) * len(PARAMS.seeds)
    assert len(runs) == n_models
    for run in runs:
        tags = run.data.tags
        folder = seed_dir(work / "models" / f"{tags['task']}-{tags['method']}", int(tags["seed"]))
        finetune_run_id = json.loads((folder / "run.json").read_text())["run_id"]
        assert tags["upstream_run_id"] == finetune_run_id and tags["noise_level"] == "0.0"
        assert tags["data_md5.finetune"].endswith(".dir")
        assert run.data.metrics["robust_accuracy_eps8"] <= run.data.metrics["clean_accuracy"]
    for task, method in finetuned:
        prefix = f"{task}.{method}"
        curve = [metrics[f"{prefix}.clean_accuracy"]] + [
            metrics[f"{prefix}.robust_accuracy_eps{e:g}"] for e in (*ROBUST.eps, ROBUST.large_eps)
        ]
        assert all(b <= a for a, b in itertools.pairwise(curve)), (prefix, curve)
        for flag in (
            "check_near_zero_at_large_eps",
            "check_attacks_at_least_fgsm",
            "check_image_gradient_nonzero",
        ):
            assert metrics[f"{prefix}.{flag}"] in (0.0, 1.0)
        assert f"{prefix}.seed-1.gradient_masking_suspected" in metrics
        assert metrics[f"{prefix}.n"] == min(
            ROBUST.protocol.max_examples, len(_test_rows(data_root, task))
        )
    # The VQA probe answers some closed questions right, so its attack had work to do.
    assert metrics["vqa.lp.clean_accuracy"] > 0
    with np.load(work / "models" / "outcomes-vqa.npz") as outcomes:
        robust = outcomes["vqa.lp.robust_accuracy_eps8"]
        assert robust.shape == (len(PARAMS.seeds), metrics["vqa.lp.n"])
        assert robust.mean() == pytest.approx(metrics["vqa.lp.robust_accuracy_eps8"])
        assert len(outcomes["vqa.rows"]) == robust.shape[1]


def _test_rows(data_root: Path, task: str) -> list:
    return list(make_task(task, data_root / "prepared").rows("test")["id"])


def test_eval_robust_names_a_missing_model(data_root: Path, pretrain_dir: Path, work: Path) -> None:
    with pytest.raises(InputError, match=r"no fine-tuned model in .*cls-advft.*seed-0"):
        robust_run(data_root, pretrain_dir, work / "models", ["cls"], ["advft"])


def test_unknown_task_or_method_fails_before_any_work(
    data_root: Path, pretrain_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ParamsError, match=r"unknown task \['seg'\]; valid tasks: \['cls', 'vqa'\]"):
        finetune_run(data_root, pretrain_dir, tmp_path, "seg", "lp")
    with pytest.raises(ParamsError, match=r"unknown method \['full'\]; valid methods: \['advft',"):
        finetune_run(data_root, pretrain_dir, tmp_path, "cls", "full")
    assert not (tmp_path / "models").exists()
    with pytest.raises(
        ParamsError, match=r"valid methods: \['advft', 'fare', 'lp', 'mlp', 'nmtune'"
    ):
        robust_run(data_root, pretrain_dir, tmp_path, ["cls"], ["svm"])


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("finetune.tasks", ["cls", "seg"], r"finetune\.tasks .*valid tasks: \['cls', 'vqa'\]"),
        ("finetune.methods", ["lora"], r"unknown method \['lora'\]; valid methods: \['advft'"),
        ("finetune.nmtune.head", "svm", r"finetune\.nmtune\.head = 'svm': .*'linear' or 'mlp'"),
        ("finetune.ran.w_foo", 1.0, r"finetune\.ran\.w_foo: unknown key"),
        ("finetune.ran.w_adv", -1.0, r"finetune\.ran\.w_adv = -1\.0"),
        ("finetune.vqa.width", 30, r"width 30 must divide by heads 4"),
        ("finetune.seeds", [0, 0], r"seeds must be distinct"),
        ("eval_robust.eps", [0.0, 2.0], r"eval_robust\.eps = \[0\.0, 2\.0\]: .*in \(0, 255\]"),
        ("eval_robust.eps", [-1.0], r"bad: \[-1\.0\]"),
        ("eval_robust.large_eps", 4.0, r"large_eps 4\.0 must be >= the largest eps 8\.0"),
    ],
)
def test_bad_params_are_named(path: str, value: object, expected: str) -> None:
    with pytest.raises(ParamsError, match=expected):
        parse_params(with_change(path, value))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_method_config_is_its_params_section(method: str) -> None:
    """One definition: the method takes the class of its ``finetune.<method>`` section."""
    assert METHODS[method].config_class is FinetuneParams.method_section(method)
    assert isinstance(ALL.finetune.method_config(method), METHODS[method].config_class)
