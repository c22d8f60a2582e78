"""dcign-eval's command line: every command's --help, bad input refused with exit status 2, and
outputs that cannot be written failing at once, before the work."""


import pytest

from dcign_eval import cli


COMMANDS = {  # each with the options that point its other writes into the test's folder
    "metrics": ["--grid-dir", "{tmp}/grid"],
    "diagnose": ["--grid-dir", "{tmp}/grid"],
    "recognition": ["--identities", "2"],
    "traverse": [],
    "report": ["--grid-dir", "{tmp}/grid", "--recognition-cache", "{tmp}/cache"],
    "demo": ["--profile", "tiny", "--data-root", "{tmp}/data"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_that_is_a_file_fails_before_the_work(command, tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("DCIGN_EVAL_CACHE", str(tmp_path / "user-cache"))
    somefile = tmp_path / "somefile"
    somefile.write_text("keep me")
    extra = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    for out in (somefile, somefile / "sub"):
        code, stdout, stderr = run_cli([command, "--out", out, *extra])
        assert code == 2, stderr
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        assert str(somefile) in stderr
    assert somefile.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["somefile"]  # nothing rendered or trained


# -- every command: its --help, and one bad input refused before any work ------------------------

HELP = {  # each command and what its --help must show (the choices of a fixed-set option)
    ("render", "grid"): ["--split", "train", "test"],
    ("render", "monovariant"): ["--train-batches"],
    ("train",): ["--recipe", "monovariant", "vae", "cosine"],
    ("metrics",): ["--metric", "mig", "none"],
    ("diagnose",): ["--model"],
    ("recognition",): ["--classifier", "1nn-cosine", "logistic", "linear-svc"],
    ("traverse",): ["--neuron", "--fidelity"],
    ("report",): ["--model", "--full"],
    ("demo",): ["--profile", "quick", "full", "tiny"],
}


@pytest.mark.parametrize("command", HELP, ids=" ".join)
def test_every_command_has_help(command, run_cli):
    code, stdout, stderr = run_cli([*command, "--help"])
    assert code == 0, stderr
    for word in HELP[command]:
        assert word in stdout, (word, stdout)


BAD = {  # one bad input a command, and a word of the error it must give
    ("render", "grid", "--split", "validation"): "'validation' is not one of 'train', 'test'",
    ("render", "monovariant", "--size", "7"): "error: ",
    ("train", "--mode", "beta"): "error: argument --mode: invalid choice: 'beta'",
    ("metrics", "--metric", "accuracy"): "'accuracy' is not one of",
    ("diagnose", "--identities", "1"): "--identities",
    ("recognition", "--classifier", "knn"): "'knn' is not one of '1nn-cosine'",
    ("traverse", "--neuron", "nose"): "error: ",
    ("report", "--seed", "-1"): "--seed",
    ("report", "--quick", "--full"): "error: --quick and --full contradict each other",
    ("recognition", "--resamples", "-1"): "--resamples",
    ("demo", "--profile", "huge"): "'huge' is not one of 'quick', 'full', 'tiny'",
}


@pytest.mark.parametrize("args", BAD, ids=" ".join)
def test_every_command_refuses_a_bad_input(args, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)  # whatever a command might write lands here
    code, stdout, stderr = run_cli(args)
    assert code == 2, stderr
    assert BAD[args] in " ".join(stderr.replace("│", " ").split()), stderr
    if stderr.startswith("error: "):  # ours: one line
        assert stderr.count("\n") == 1, stderr
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_the_choices_are_the_librarys():
    from dcign_eval.metrics import DCI_MODES, METRIC_KEYS
    from dcign_eval.pipeline import PROFILES
    from dcign_eval.recognition import CLASSIFIERS

    assert tuple(m.value for m in cli.Metric) == (*METRIC_KEYS, "none")
    assert tuple(e.value for e in cli.DciEstimator) == DCI_MODES
    assert tuple(p.value for p in cli.Profile) == PROFILES
    assert tuple(c.value for c in cli.Classifier) == CLASSIFIERS
