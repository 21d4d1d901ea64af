"""Optional lookups in NATS-Bench's topology benchmark (the ``nats`` extra: ``pip install nats_bench`` and
the benchmark files, which naspoison never downloads). Always with an explicit training schedule
(``hp``: "12" or "200" epochs) and trial seed, because the API's defaults (hp 12, a random trial)
silently change the number a table reports.

Lookups go by arch string (``naspoison.spaces.nb201``'s strings are NATS-Bench's), never by index:
naspoison's 0..15,624 numbering is its own.
"""
from __future__ import annotations

HPS = ("12", "200")


def open_api(path: str):
    try:
        from nats_bench import create
    except ImportError:
        raise ImportError("NATS-Bench lookups need the nats extra: pip install 'naspoison[nats]' "
                          "and the benchmark files (NATS-tss-v1_0-3ffb9-simple)") from None
    return create(path, "tss", fast_mode=True, verbose=False)


def lookup(api, arch: str, dataset: str, hp: str, seed: int) -> dict:
    """The benchmark's record of ``arch`` on ``dataset`` (cifar10, cifar100, ImageNet16-120) trained with
    ``hp`` epochs, trial ``seed`` (the benchmark's seeds are 777, 888 and 999; not every cell has all)."""
    from naspoison.spaces import nb201

    nb201.parse(arch)  # our own validation first: clear errors for a malformed string
    if str(hp) not in HPS:
        raise ValueError(f"hp {hp!r}: NATS-Bench's topology benchmark has hp '12' or '200'")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError("give the trial seed explicitly (777, 888 or 999); a random trial is not reproducible")
    index = api.query_index_by_arch(arch)
    if index is None or index < 0:
        raise KeyError(f"{arch} is not in this NATS-Bench file")
    info = api.get_more_info(index, dataset, hp=str(hp), is_random=seed)
    return {"arch": arch, "nats_index": int(index), "dataset": dataset, "hp": str(hp), "seed": seed,
            "test_accuracy": info["test-accuracy"], "train_accuracy": info.get("train-accuracy"),
            "valid_accuracy": info.get("valid-accuracy")}
