"""Malformed suite files: each is rejected with file, line and key, exit status 2, nothing run."""
import pytest

from naspoison.cli import main
from naspoison.suite import Suite, SuiteError
from naspoison.suite.expand import expand

GOOD = """\
version: 1
families:
  poisoning:
    attacks: [none, gaussian_noise, random_label_flip]
    budgets: [0.01, 0.1, 0.5]
    algorithms: [random]
  random_baseline:
    algorithm: random
profiles:
  demo:
    seeds: 2
    dataset: {name: digits}
    train:
      epochs: 1
      flip: false
    attacks:
      gaussian_noise: {sigma: 0.05}
"""

# (replace this, with this, expected line, text the message must contain)
CASES = [
    ("version: 1\n", "version: 1\nversoin: 2\n", 2, "unknown key; did you mean 'version'"),
    ("  random_baseline:", "  random_baselin:", 7, "did you mean 'random_baseline'"),
    ("[none, gaussian_noise, random_label_flip]", "[none, gausian_noise, random_label_flip]", 4,
     "did you mean 'gaussian_noise'"),
    ("algorithms: [random]", "algorithms: [randm]", 6, "did you mean 'random'"),
    ("    algorithm: random", "    algorithm: pdarts_x", 8, "unknown name 'pdarts_x'"),
    ("[0.01, 0.1, 0.5]", "[0.01, 0.1, 1.5]", 5, "outside (0, 1]"),
    ("[0.01, 0.1, 0.5]", "[0.0, 0.1, 0.5]", 5, "outside (0, 1]"),
    ("[0.01, 0.1, 0.5]", "[-0.1, 0.1]", 5, "outside (0, 1]"),
    ("[0.01, 0.1, 0.5]", "[0.1, 0.1]", 5, "listed twice"),
    ("[0.01, 0.1, 0.5]", "['0.01', 0.1]", 5, "got the string '0.01'"),
    ("[0.01, 0.1, 0.5]", "[]", 5, "at least 1 item"),
    ("[none, gaussian_noise, random_label_flip]", "[gaussian_noise]", 4, "no-attack row"),
    ("[none, gaussian_noise, random_label_flip]", "[none, none]", 4, "listed twice"),
    ("      flip: false", "      flip: no", 15, "YAML 1.1 would read 'no' as a boolean"),
    ("      epochs: 1", "      epochs: 1.5", 14, "valid integer"),
    ("      epochs: 1", "      epochs: 0", 14, "greater than 0"),
    ("      epochs: 1", "      epochs: 1\n      epochs: 2", 15, "duplicate key (first given on line 14)"),
    ("      epochs: 1", "      epoch: 1", 14, "did you mean 'epochs'"),
    ("    seeds: 2", "    seeds: two", 11, "valid integer"),
    ("    seeds: 2\n", "", 10, "required key is missing"),
    ("{name: digits}", "{name: cifar-10}", 12, "did you mean 'cifar10'"),
    ("{name: digits}", "{name: digits, donwload: true}", 12, "did you mean 'download'"),
    ("{sigma: 0.05}", "{sigma: -0.05}", 17, "greater than 0"),
    ("{sigma: 0.05}", "{sigmaa: 0.05}", 17, "unknown key"),
    ("      gaussian_noise: {sigma: 0.05}", "      gaussian_noise: {sigma: 0.05}\n      random_label_flip: {x: 1}", 18,
     "unknown key"),
    ("    attacks:\n      gaussian_noise: {sigma: 0.05}\n",
     "    attacks:\n      gaussian_noise: {sigma: 0.05}\n    algorithms:\n      random: {}\n      enas: {}\n", 20,
     "unknown name 'enas'"),
    ("    dataset: {name: digits}", "    dataset: {name: npz}", 12, "needs a path"),
    ("version: 1\n", "version: 1\nprofiles_extra: !!python/object:os.system {}\n", 2, "not allowed"),
    ("  poisoning:\n", "  poisoning:\n    attacks: [none\n", 5, "not valid YAML"),
    # P-DARTS's skip-connect dropout depends on the dataset: never a silent default
    ("algorithms: [random]", "algorithms: [random, pdarts]", 10, "does not set skip_dropout"),
    ("algorithms: [random]\n", "algorithms: [random, pdarts]\n", 19, "one entry per stage"),
    ("algorithms: [random]", "algorithms: [random, pdarts]", 19, "must fall strictly from 8 and end at 1"),
]
# the last two cases also append a pdarts block to the demo profile
PDARTS_BLOCKS = {len(CASES) - 2: "    algorithms:\n      pdarts: {skip_dropout: [0.0, 0.4]}\n",
                 len(CASES) - 1: "    algorithms:\n      pdarts: {skip_dropout: [0.0, 0.4, 0.7], ops_kept: [5, 3, 2]}\n"}


def write(tmp_path, text, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_suite_loads_and_expands(tmp_path):
    suite = Suite(write(tmp_path, GOOD, "good.yaml"))
    exp = expand(suite, "demo")
    # 7 poisoning rows x 2 seeds + 2 baseline trials
    assert len(exp.trials) == 7 * 2 + 2


@pytest.mark.parametrize("old, new, line, message", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_malformed_suite_is_rejected_with_file_line_and_exit_2(tmp_path, capsys, old, new, line, message):
    assert old in GOOD
    case = CASES.index((old, new, line, message))
    path = write(tmp_path, GOOD.replace(old, new, 1) + PDARTS_BLOCKS.get(case, ""))
    artifacts = tmp_path / "art"
    code = main(["bench", str(path), "--profile", "demo", "--store", str(tmp_path / "store"),
                 "--artifacts", str(artifacts)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{path}:{line}:" in err, err
    assert message in err, err
    assert not (tmp_path / "store").exists() and not artifacts.exists()  # nothing ran


def test_there_are_at_least_twenty_malformed_cases():
    assert len(CASES) >= 20


def test_yaml_12_numbers_are_numbers(tmp_path):
    suite = Suite(write(tmp_path, GOOD.replace("[0.01, 0.1, 0.5]", "[1e-2, 1.0e-1, 5e-1]"), "ok.yaml"))
    assert suite.model.families.poisoning.budgets == [0.01, 0.1, 0.5]


def test_unknown_profile_is_an_error_with_suggestion(tmp_path, capsys):
    path = write(tmp_path, GOOD, "good.yaml")
    assert main(["bench", str(path), "--profile", "dmeo", "--plan", "--store", str(tmp_path / "s")]) == 2
    assert "did you mean 'demo'" in capsys.readouterr().err


def test_empty_and_missing_files(tmp_path, capsys):
    assert main(["bench", str(write(tmp_path, "")), "--plan"]) == 2
    assert main(["bench", str(tmp_path / "nope.yaml"), "--plan"]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "cannot read" in err


def test_shipped_suite_is_valid_in_every_profile():
    suite = Suite("suite.yaml")
    for name in ("paper", "lab", "demo"):
        assert expand(suite, name).trials
    with pytest.raises(SuiteError):
        suite.profile("nope")
