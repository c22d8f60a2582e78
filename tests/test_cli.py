"""dcign-eval's command line: outputs that cannot be written fail at once, before the work."""

import sys

import pytest

from dcign_eval import cli


def run_cli(args, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["dcign-eval", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


COMMANDS = {  # each with the options that point its other writes into the test's folder
    "metrics": ["--grid-dir", "{tmp}/grid"],
    "diagnose": ["--grid-dir", "{tmp}/grid"],
    "recognition": ["--identities", "2"],
    "traverse": [],
    "report": ["--grid-dir", "{tmp}/grid", "--recognition-cache", "{tmp}/cache"],
    "demo": ["--profile", "tiny", "--data-root", "{tmp}/data"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_that_is_a_file_fails_before_the_work(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DCIGN_EVAL_CACHE", str(tmp_path / "user-cache"))
    somefile = tmp_path / "somefile"
    somefile.write_text("keep me")
    extra = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    for out in (somefile, somefile / "sub"):
        code, stdout, stderr = run_cli([command, "--out", out, *extra], monkeypatch, capsys)
        assert code == 2, stderr
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        assert str(somefile) in stderr
    assert somefile.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["somefile"]  # nothing rendered or trained
