"""The ``atrous`` command line: help, the zoo listing, train then evaluate."""
import subprocess
import sys

import pytest

from atrous.cli import main


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "atrous", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("models", "train", "evaluate"):
        assert command in out.stdout


def test_models_lists_zoo_with_torchvision_parameter_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert rows["resnet18"] == "11,689,512"
    assert rows["alexnet"] == "61,100,840"
    assert rows["vgg16"] == "138,357,544"


def test_train_then_evaluate_reports_the_same_accuracy(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="scikit-learn provides the digits data")
    out = str(tmp_path / "run")
    assert main(["train", "--epochs", "1", "--out", out, "--quiet"]) == 0
    trained = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["evaluate", "--checkpoint", out]) == 0
    evaluated = capsys.readouterr().out
    acc_train = trained.split("test accuracy ")[1].split("%")[0]
    assert f"accuracy {acc_train}%" in evaluated


def test_errors_are_plain_messages(tmp_path):
    with pytest.raises(SystemExit, match="config.json not found"):
        main(["evaluate", "--checkpoint", str(tmp_path)])
    with pytest.raises(SystemExit, match="nothing to resume|config.json"):
        main(["train", "--out", str(tmp_path / "none"), "--resume"])
