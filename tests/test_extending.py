"""The worked examples of docs/extending.md run as written: each section's Python block is executed, its
component registered under its name, run on tiny data, and used by a suite that validates and expands."""
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from naspoison import attacks, defenses, nas
from naspoison.defenses import DEFENSES
from naspoison.data.datasets import load_dataset
from naspoison.suite import Suite
from naspoison.suite.expand import expand

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def section_code(title: str) -> str:
    """The ```python block of the ``## title`` section."""
    text = DOC.read_text()
    body = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)
    assert len(blocks) == 1, f"{title}: expected one python block, found {len(blocks)}"
    return blocks[0]


def component(title: str, protocol: type) -> type:
    """Execute the section's block as its own module and return the one ``protocol`` subclass it defines."""
    ns: dict = {"__name__": f"extending_{title.lower().replace(' ', '_')}"}
    exec(compile(section_code(title), f"{DOC}:{title}", "exec"), ns)  # noqa: S102 -- our own doc, the point of the test
    found = [v for v in ns.values() if isinstance(v, type) and issubclass(v, protocol) and v.__module__ == ns["__name__"]]
    assert len(found) == 1, found
    return found[0]


def suite(tmp_path, text: str) -> Suite:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return Suite(path)


def test_the_doc_adds_the_three_sections():
    heads = re.findall(r"^## (.+)$", DOC.read_text(), flags=re.MULTILINE)
    assert {"Add an attack", "Add a NAS algorithm", "Add a backdoor defense"} <= set(heads)


def test_add_an_attack(tmp_path, monkeypatch):
    cls = component("Add an attack", attacks.Attack)
    monkeypatch.setitem(attacks.ATTACKS, cls.name, cls)
    data = load_dataset({"name": "digits"})
    attack = attacks.get(cls.name)()
    p = attack.poison(data, 0.1, attack.Params(target=3), np.random.default_rng(0))
    # budget arithmetic by hand: round(0.1 * 1437) = 144 distinct sorted indices, every one relabelled 3
    assert len(p.indices) == 144 == len(np.unique(p.indices)) and np.all(np.diff(p.indices) > 0)
    poisoned = p.apply(data)
    assert np.all(poisoned.y_train[p.indices] == 3)
    rest = np.setdiff1d(np.arange(len(data.y_train)), p.indices)
    assert np.array_equal(poisoned.y_train[rest], data.y_train[rest])
    assert p.summary["already_target"] == int((data.y_train[p.indices] == 3).sum())
    with pytest.raises(ValueError, match="not a class"):
        attack.poison(data, 0.1, attack.Params(target=10), np.random.default_rng(0))

    s = suite(tmp_path, f"""\
version: 1
families:
  poisoning: {{attacks: [none, {cls.name}], budgets: [0.1], algorithms: [random, tenas]}}
profiles:
  tiny:
    seeds: 1
    dataset: {{name: digits}}
    attacks: {{{cls.name}: {{target: 3}}}}
""")
    trials = expand(s, "tiny").trials
    mine = [t for t in trials if t.row == cls.name]
    # a label attack against TE-NAS (uses_labels = False) is skipped: only the random row remains
    assert [t.algorithm for t in mine] == ["random"]
    assert mine[0].poison["params"]["attack_params"] == {"target": 3}


def test_add_a_nas_algorithm(tmp_path, monkeypatch):
    cls = component("Add a NAS algorithm", nas.NASAlgorithm)
    monkeypatch.setitem(nas.ALGORITHMS, cls.name, cls)
    from naspoison.spaces.darts import Genotype

    data = load_dataset({"name": "digits", "train_size": 200, "test_size": 50})
    alg = nas.get(cls.name)()
    params = alg.Params(candidates=3, batch_size=16, channels=4, layers=2)
    out = alg.search(data, params, seed=1)
    Genotype.from_dict(out["genotype"])  # a valid DARTS genotype
    scores = [c["grad_norm"] for c in out["candidates"]]
    assert len(scores) == 3 and all(np.isfinite(scores))
    assert out["chosen"] == int(np.argmax(scores)) and out["genotype"] == out["candidates"][out["chosen"]]["genotype"]
    assert alg.search(data, params, seed=1)["genotype"] == out["genotype"]  # deterministic given the seed
    # the score reads the labels: shuffling them changes it (so label-flip rows are meaningful: uses_labels)
    shuffled = replace(data, y_train=np.random.default_rng(0).permutation(data.y_train))
    assert [c["grad_norm"] for c in alg.search(shuffled, params, seed=1)["candidates"]] != scores

    s = suite(tmp_path, f"""\
version: 1
families:
  poisoning: {{attacks: [none, random_label_flip], budgets: [0.1], algorithms: [{cls.name}]}}
profiles:
  tiny:
    seeds: 2
    dataset: {{name: digits}}
    algorithms: {{{cls.name}: {{candidates: 5}}}}
""")
    trials = expand(s, "tiny").trials
    assert len(trials) == 4 and {t.algorithm for t in trials} == {cls.name}
    assert all(t.search["params"]["algorithm_params"]["candidates"] == 5 for t in trials)


def _planted(data, poison: bool, target: int) -> torch.nn.Module:
    """A small MLP on 8x8 digits; with ``poison``, 10 % of the training set carries a white 2x2 square in the
    bottom-right corner and the label ``target`` (BadNets)."""
    x, y = data.x_train.copy(), data.y_train.copy()
    if poison:
        idx = np.random.default_rng(0).choice(len(x), len(x) // 10, replace=False)
        x[idx, -2:, -2:, :] = 255
        y[idx] = target
    from naspoison.data.augment import channel_stats

    mean, std = channel_stats(data.x_train)  # what Suspect normalises with
    xt = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, -1, 1, 1).float()) \
        / torch.tensor(std).view(1, -1, 1, 1).float()
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(mlp.parameters(), lr=0.01)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(mlp(xt), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()

    class PairOutput(torch.nn.Module):  # every network here returns (logits, aux)
        def __init__(self):
            super().__init__()
            self.mlp = mlp

        def forward(self, z):
            return self.mlp(z), None

    return PairOutput()


def test_add_a_backdoor_defense(tmp_path, monkeypatch):
    cls = component("Add a backdoor defense", defenses.BackdoorDefense)
    monkeypatch.setitem(defenses.DEFENSES, cls.name, cls)
    data = load_dataset({"name": "digits"})

    def trigger(x01):
        x = x01.clone()
        x[:, :, -2:, -2:] = 1.0
        return x

    target = 7
    planted = defenses.Suspect(_planted(data, True, target), trigger, data, target, torch.device("cpu"))
    clean = defenses.Suspect(_planted(data, False, target), trigger, data, target, torch.device("cpu"))
    assert planted.acc_asr()["asr"] > 0.9 and clean.acc_asr()["asr"] < 0.3  # the backdoor is there, and only there
    defense = defenses.get(cls.name)()
    params = defense.Params(samples=150)
    caught, quiet = defense.run(planted, params), defense.run(clean, params)
    assert caught["target_flagged"] and caught["flagged"] == [target]
    assert quiet["flagged"] == [] and not quiet["target_flagged"]
    # the probe's bottom-right patch is the trigger: its capture is the ASR on the same images, give or take
    # the images already predicted as the target (the capture counts only the others)
    assert caught["target_capture"] > 0.9
    assert cls.summary(caught) == {"target_capture": caught["target_capture"], "target_flagged": True}
    # in the report: its own columns in the table it names, next to Neural Cleanse's (every format)
    from naspoison.report import render
    from naspoison.report.evas import defense_section, tables

    records = [{"dataset": "digits", "row": "evas", "seed": s, "defense": name, "result": DEFENSES[name].summary(r)}
               for s, (name, r) in enumerate([(cls.name, caught), (cls.name, quiet), ("strip", {"auroc": 0.75})])]
    section = defense_section(records)
    assert section[cls.name][0]["flagged"] == 1 and section[cls.name][0]["n"] == 2
    [table] = [t for t in tables({"rows": [], "searches": [], "defenses": section}) if cls.table == t.title]
    assert [c.name for c in table.columns][2:] == ["STRIP AUROC", "corner capture of the target",
                                                   "corner flags the target"]
    assert [e.text for e in table.rows[0]][-1] == "1/2"
    assert "corner flags the target" in render.to_latex({"evas": {"rows": [], "searches": [], "defenses": section}})

    s = suite(tmp_path, f"""\
version: 1
families:
  evas_search: {{search_seeds: 1}}
  evas_eval: {{baselines: [resnet18], random_archs: 1, defenses: [{cls.name}]}}
profiles:
  tiny:
    seeds: 1
    dataset: {{name: digits}}
    evas:
      seeds: 1
      defenses: {{{cls.name}: {{samples: 50}}}}
""")
    trials = [t for t in expand(s, "tiny").trials if t.defense == cls.name]
    assert {t.algorithm for t in trials} == {"evas", "resnet18", "random_1"}  # every row of Tables 4-5
    assert all(t.defense_params == cls.Params(samples=50).model_dump() for t in trials)


def test_add_a_suite_family(tmp_path):
    """The family runs end to end through the API: its cells are the poisoning family's clean ones (computed
    once when both are declared), its row counts the seeds, its parameter count is the network's own."""
    import naspoison
    from naspoison.families import FAMILIES, Family
    from naspoison.store import ResultStore

    assert "architecture_size" not in FAMILIES
    try:
        component("Add a suite family", Family)
        assert "architecture_size" in FAMILIES
        s = suite(tmp_path, """\
version: 1
families:
  poisoning: {attacks: [none], budgets: [0.1], algorithms: [random]}
  random_baseline: {algorithm: random}
  architecture_size: {algorithms: [random]}
profiles:
  tiny:
    seeds: 2
    dataset: {name: digits, train_size: 300, test_size: 100}
    train: {epochs: 1, batch_size: 64, init_channels: 4, layers: 3, cutout: 0, drop_path_prob: 0.0}
""")
        summary = naspoison.bench(s, "tiny", tmp_path / "store", workers=1, artifacts=tmp_path / "art")
        assert not summary.failed and summary.computed == {"search": 2, "train": 2}  # shared by all three families
        report = naspoison.report(s, "tiny", tmp_path / "store", out=tmp_path / "out")
        [row] = report["architecture_size"]
        store = ResultStore(tmp_path / "store", read_only=True)
        trained = [store.load_file(p).result for p in store.iter_files() if p.parent.name == "train"]
        assert row["n"] == 2 and row["params_m"] == pytest.approx(sum(r["params"] for r in trained) / 2e6)
        assert row["accuracy"] == pytest.approx(50 * sum(r["test_acc"] for r in trained))
        # the network's own count: the genotype rebuilt with the recipe (the train cell's spec) and counted here
        from naspoison.spaces.darts import Genotype
        from naspoison.train import Recipe, seeded_eval_network

        rec = next(store.load_file(p) for p in store.iter_files() if p.parent.name == "train")
        net = seeded_eval_network(Genotype.from_dict(rec.spec["params"]["genotype"]), load_dataset(
            {"name": "digits", "train_size": 300, "test_size": 100}), Recipe.model_validate(rec.spec["params"]["recipe"]), 0)
        assert rec.result["params"] == sum(p.numel() for n, p in net.named_parameters() if "auxiliary" not in n)
        md = (tmp_path / "out" / "report.md").read_text()
        assert "Size of what each algorithm finds" in md and "Size of what each algorithm finds" in \
            (tmp_path / "out" / "report.tex").read_text()
    finally:
        FAMILIES.pop("architecture_size", None)
