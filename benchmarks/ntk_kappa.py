"""TE-NAS's NTK condition number: the product's κ against the reference's naive per-sample loop,
measured in one run on the same networks and batch, plus the TE-NAS search end to end.

  python benchmarks/ntk_kappa.py [--npz ../shared/data/cifar10_subset.npz] [--search]

Naive (what the published code does per candidate op): build the parent and the child network,
for each one forward, then per sample ``.backward()`` of its summed logits into ``.grad``, gather
every ``weight`` gradient, ``zero_grad``; κ from float32 eigenvalues; both networks every time; ops
already pruned are skipped (the reference's MixedOp skips softmax weights <= 0.01).
Product: the parent's κ once per round and repeat (shared by the round's candidates, charged
1/round-size per candidate), the children's κ in batched passes (``Probe.child_kappas``: vmap over
16 children, jacrev over the samples), eigenvalues in float64, and on CPU the plain convolution
kernels for these 1-channel proxies. Timings are interleaved (naive and product alternate, which
goes first alternates too) and medians are reported.

Printed: seconds per κ for one network both ways, seconds of κ work per candidate op both ways in
round 1 (7 ops per edge) and round 2 (4 ops per edge), their ratios and how far the κ values of the
two agree; with ``--search``, a TE-NAS search and its seconds per pruning round.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from naspoison.data.datasets import load_dataset
from naspoison.nas.metrics import kappa, ntk_gram, thin_network_kernels
from naspoison.nas.tenas import KINDS, OPS, TENAS, Probe, TENASParams
from naspoison.spaces.darts import EDGES


def naive_kappa(model: torch.nn.Module, x: torch.Tensor) -> float:
    model.train()
    model.zero_grad()
    logit = model(x)
    grads = []
    for i in range(len(x)):
        logit[i:i + 1].backward(torch.ones_like(logit[i:i + 1]), retain_graph=True)
        grads.append(torch.cat([p.grad.reshape(-1).detach() for n, p in model.named_parameters()
                                if "weight" in n and p.grad is not None]))
        model.zero_grad()
    g = torch.stack(grads)
    ev = torch.linalg.eigvalsh(g @ g.T)  # float32, as the reference's symeig
    return float(ev[-1] / ev[0])


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", help="images to use (default: the bundled digits)")
    ap.add_argument("--candidates", type=int, default=16, help="candidate ops timed per round (spread over the round)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--search", action="store_true", help="also run a TE-NAS search and time its rounds")
    ap.add_argument("--search-repeats", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    data = load_dataset({"name": "npz", "path": args.npz} if args.npz else {"name": "digits"})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    p = TENASParams()
    torch.manual_seed(0)
    probe = Probe(data, p, np.random.default_rng(0), device)
    probe.new_repeat()
    net, x = probe.ntk_net, probe.ntk_x
    full = {k: np.ones((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    print(f"data {data.name} {data.shape}, NTK batch {len(x)}, proxy width {p.channels}, device {device}, "
          f"{torch.get_num_threads()} threads", flush=True)

    def fast_kappa() -> float:
        with thin_network_kernels(device):
            return kappa(ntk_gram(net, x))

    net.set_alive(full["normal"], full["reduce"])
    naive_kappa(net, x), fast_kappa()  # warm-up
    one_naive, one_fast = [], []
    for r in range(args.repeat):  # interleaved
        one_naive.append(timed(lambda: naive_kappa(net, x), 1)[0])
        one_fast.append(timed(fast_kappa, 1)[0])
    t_naive, t_fast = statistics.median(one_naive), statistics.median(one_fast)
    k_naive, k_fast = naive_kappa(net, x), fast_kappa()
    print(f"one network: naive {t_naive:.3f} s, product {t_fast:.3f} s, ratio {t_naive / t_fast:.2f}x "
          f"(κ {k_naive:.6g} vs {k_fast:.6g})", flush=True)
    record = {"data": data.name, "device": str(device), "threads": torch.get_num_threads(), "ntk_batch": len(x),
              "one_network": {"naive_s": t_naive, "product_s": t_fast, "ratio": t_naive / t_fast}}

    rng = np.random.default_rng(1)
    four = {k: np.zeros((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    for k in KINDS:
        for e in range(len(EDGES)):
            four[k][e, rng.choice(len(OPS), 4, replace=False)] = True
    rounds = {"round1": (full, 2 * 14 * 7), "round2": (four, 2 * 14 * 4)}
    for name, (parent, round_size) in rounds.items():
        cands = [(k, e, int(o)) for k in KINDS for e in range(len(EDGES)) for o in np.flatnonzero(parent[k][e])]
        cands = [cands[i] for i in np.linspace(0, len(cands) - 1, args.candidates).round().astype(int)]

        def child(c):
            m = {k: v.copy() for k, v in parent.items()}
            m[c[0]][c[1], c[2]] = False
            return m

        def naive():
            # the reference, per candidate: parent and child networks, both every time; pruned ops (softmax
            # weight <= 0.01) are skipped by its MixedOp, as the mask skips them here
            t0 = time.perf_counter()
            out = []
            for c in cands:
                for mask in (parent, child(c)):
                    net.set_alive(mask["normal"], mask["reduce"])
                    out.append(naive_kappa(net, x))
            return time.perf_counter() - t0, out[1::2]

        def product():
            # the parent once per round and repeat (charged 1/round_size per candidate), the children in
            # batched passes of CANDIDATES_PER_PASS
            t0 = time.perf_counter()
            net.set_alive(parent["normal"], parent["reduce"])
            t_parent = timed(fast_kappa, 1)[0]
            out = probe.child_kappas(parent, cands)
            return time.perf_counter() - t0 - t_parent * (1 - len(cands) / round_size), out

        naive_t, product_t = [], []
        for r in range(args.repeat):  # interleaved, alternating which goes first: load drifts hit both alike
            for fn in ((naive, product) if r % 2 == 0 else (product, naive)):
                t, kap = fn()
                (naive_t if fn is naive else product_t).append(t)
                if fn is naive:
                    k_naive = kap
                else:
                    k_product = kap
        rel = max(abs(a - b) / abs(a) for a, b in zip(k_naive, k_product))
        one_at_a_time = []  # the product's own one-network κ of each child (float64 eigenvalues, like the batch)
        for c in cands:
            m = child(c)
            net.set_alive(m["normal"], m["reduce"])
            one_at_a_time.append(fast_kappa())
        rel_own = max(abs(a - b) / abs(a) for a, b in zip(one_at_a_time, k_product))
        n_each, p_each = statistics.median(naive_t) / len(cands), statistics.median(product_t) / len(cands)
        print(f"{name} ({int(parent['normal'][0].sum())} ops/edge), κ work per candidate op: naive {n_each:.3f} s, "
              f"product {p_each:.3f} s, ratio {n_each / p_each:.2f}x ({len(cands)} candidates, {args.repeat} "
              f"interleaved repeats, medians; κ agree to {rel:.1e} relative, to {rel_own:.1e} with the product's "
              f"one-network κ)", flush=True)
        record[f"per_candidate_{name}"] = {"naive_s": n_each, "product_s": p_each, "ratio": n_each / p_each,
                                           "max_relative_kappa_difference": rel,
                                           "max_relative_difference_to_one_network_product": rel_own,
                                           "naive_runs_s": naive_t,
                                           "product_runs_s": product_t}
    n1, n2 = 196, 112  # candidates of the two op-pruning rounds
    r1, r2 = record["per_candidate_round1"], record["per_candidate_round2"]
    overall = (n1 * r1["naive_s"] + n2 * r2["naive_s"]) / (n1 * r1["product_s"] + n2 * r2["product_s"])
    print(f"both op-pruning rounds (196 + 112 candidates), κ work: ratio {overall:.2f}x", flush=True)
    record["op_rounds_ratio"] = overall
    if args.search:
        sp = TENASParams(repeats=args.search_repeats)
        t0 = time.perf_counter()
        out = TENAS().search(data, sp, 0, device=device, log=lambda m: print("  " + m, flush=True))
        record["search"] = {"params": sp.model_dump(), "seconds": time.perf_counter() - t0,
                            "rounds": [{"phase": r["phase"], "candidates": len(r["candidates"]), "seconds": r["seconds"]}
                                       for r in out["rounds"]], "genotype": out["genotype"]}
        print(f"TE-NAS search: {record['search']['seconds']:.0f} s; genotype {json.dumps(out['genotype'])}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
