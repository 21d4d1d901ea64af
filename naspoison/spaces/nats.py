"""Optional lookups in the NB201 topology benchmarks, both optional, neither downloaded by naspoison:

* NATS-Bench's topology benchmark (``open_api``; the ``nats`` extra: ``pip install nats_bench`` and the
  files ``NATS-tss-v1_0-3ffb9-simple``);
* NAS-Bench-201 itself (``open_nb201_api``; the ``nas-bench-201`` extra: ``pip install nas-bench-201``
  and one file, ``NAS-Bench-201-v1_0-e61699.pth`` or ``NAS-Bench-201-v1_1-096897.pth``).

Both go through ``lookup`` with the same arguments (the two APIs share ``query_index_by_arch`` and
``get_more_info(index, dataset, hp=, is_random=)``). Always with an explicit training schedule
(``hp``: "12" or "200" epochs) and trial seed, because the APIs' defaults (hp 12, a random trial)
silently change the number a table reports.

Lookups go by arch string (``naspoison.spaces.nb201``'s strings are the benchmarks'), never by index:
naspoison's 0..15,624 numbering is its own.
"""
from __future__ import annotations

from pathlib import Path

HPS = ("12", "200")
NB201_FILES = ("NAS-Bench-201-v1_0-e61699.pth", "NAS-Bench-201-v1_1-096897.pth")
NB201_KEYS = ("meta_archs", "arch2infos", "evaluated_indexes")


def open_api(path: str):
    try:
        from nats_bench import create
    except ImportError:
        raise ImportError("NATS-Bench lookups need the nats extra: pip install 'naspoison[nats]' "
                          "and the benchmark files (NATS-tss-v1_0-3ffb9-simple)") from None
    return create(path, "tss", fast_mode=True, verbose=False)


def open_nb201_api(path: str):
    """A ``nas_201_api.NASBench201API`` on a NAS-Bench-201 v1.0/v1.1 file (a ``torch.save``d dict with
    ``meta_archs``, ``arch2infos``, ``evaluated_indexes``). The file is unpickled here with
    ``weights_only=False`` (it holds plain Python records, which torch ≥ 2.6's default loader refuses)
    and handed to the API as a dict: open only benchmark files you trust."""
    try:
        from nas_201_api import NASBench201API
    except ImportError:
        raise ImportError("NAS-Bench-201 lookups need the nas-bench-201 extra: pip install 'naspoison[nas-bench-201]' "
                          f"and a benchmark file ({' or '.join(NB201_FILES)})") from None
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"no NAS-Bench-201 file at {p} (expected {' or '.join(NB201_FILES)})")
    blob = torch.load(p, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or any(k not in blob for k in NB201_KEYS):
        raise ValueError(f"{p} is not a NAS-Bench-201 file: a dict with keys {', '.join(NB201_KEYS)} was expected")
    api = NASBench201API(blob, verbose=False)
    api.naspoison_benchmark = "NAS-Bench-201"
    return api


def lookup(api, arch: str, dataset: str, hp: str, seed: int) -> dict:
    """The benchmark's record of ``arch`` on ``dataset`` (cifar10, cifar100, ImageNet16-120) trained with
    ``hp`` epochs, trial ``seed`` (the benchmark's seeds are 777, 888 and 999; not every cell has all).
    ``api``: from ``open_api`` (NATS-Bench, index under ``nats_index``) or ``open_nb201_api``
    (NAS-Bench-201, index under ``nb201_index``; its indices differ from NATS-Bench's)."""
    from naspoison.spaces import nb201

    nb201.parse(arch)  # our own validation first: clear errors for a malformed string
    if str(hp) not in HPS:
        raise ValueError(f"hp {hp!r}: NATS-Bench's topology benchmark has hp '12' or '200'")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError("give the trial seed explicitly (777, 888 or 999); a random trial is not reproducible")
    bench = getattr(api, "naspoison_benchmark", "NATS-Bench")
    index = api.query_index_by_arch(arch)
    if index is None or index < 0:
        raise KeyError(f"{arch} is not in this {bench} file")
    try:
        info = api.get_more_info(index, dataset, hp=str(hp), is_random=seed)
    except (KeyError, ValueError) as e:  # the API's own message is terse (a bare key)
        raise LookupError(f"{bench} has no record of {arch} on {dataset!r} with hp {hp} and seed {seed}: {e!r}") from e
    key = "nb201_index" if bench == "NAS-Bench-201" else "nats_index"
    return {"arch": arch, key: int(index), "dataset": dataset, "hp": str(hp), "seed": seed,
            "test_accuracy": info["test-accuracy"], "train_accuracy": info.get("train-accuracy"),
            "valid_accuracy": info.get("valid-accuracy")}
