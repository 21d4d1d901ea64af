"""TE-NAS's NTK condition number: the product's κ against the reference's naive per-sample loop,
measured in one run on the same networks and batch, plus the TE-NAS search end to end.

  python benchmarks/ntk_kappa.py [--npz ../shared/data/cifar10_subset.npz] [--search]

Naive (what the published code does per candidate op): build the parent and the child network,
for each one forward, then per sample ``.backward()`` of its summed logits into ``.grad``, gather
every ``weight`` gradient, ``zero_grad``; κ from float32 eigenvalues; both networks every time.
Product: the child only (the parent's κ is computed once per round and repeat and shared by the
round's candidates), gradients taken with ``autograd.grad`` only w.r.t. the weights, eigenvalues in
float64, and on CPU the plain convolution kernels for these 1-channel proxies.

Printed: seconds per κ for one network both ways, seconds of κ work per candidate op both ways,
and their ratios; with ``--search``, a TE-NAS search and its seconds per pruning round.
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
    ap.add_argument("--candidates", type=int, default=8, help="candidate ops timed (of the 196 of round 1)")
    ap.add_argument("--round-size", type=int, default=2 * 14 * 7, help="candidates sharing one parent κ")
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
    t_naive, k_naive = timed(lambda: naive_kappa(net, x), args.repeat)
    t_fast, k_fast = timed(fast_kappa, args.repeat)
    print(f"one network: naive {t_naive:.3f} s, product {t_fast:.3f} s, ratio {t_naive / t_fast:.2f}x "
          f"(κ {k_naive:.6g} vs {k_fast:.6g})", flush=True)

    cands = [(k, e, o) for k in KINDS for e in range(len(EDGES)) for o in range(len(OPS))][:args.candidates]

    def child(c):
        m = {k: v.copy() for k, v in full.items()}
        m[c[0]][c[1], c[2]] = False
        return m

    def per_candidate_naive():
        for c in cands:  # the reference: parent and child, both every time
            for mask in (full, child(c)):
                net.set_alive(mask["normal"], mask["reduce"])
                naive_kappa(net, x)

    def per_candidate_fast():
        net.set_alive(full["normal"], full["reduce"])
        fast_kappa()  # the parent, once per round: charged below at 1/round_size per candidate
        t0 = time.perf_counter()
        for c in cands:
            m = child(c)
            net.set_alive(m["normal"], m["reduce"])
            fast_kappa()
        return time.perf_counter() - t0

    t_cn, _ = timed(per_candidate_naive, 1)
    t_children, _ = timed(per_candidate_fast, 1)
    naive_each = t_cn / len(cands)
    fast_each = t_children / len(cands) + t_fast / args.round_size
    print(f"round 1 (7 ops/edge), κ work per candidate op: naive {naive_each:.3f} s, product {fast_each:.3f} s, "
          f"ratio {naive_each / fast_each:.2f}x ({len(cands)} candidates; parent shared by {args.round_size})",
          flush=True)
    record = {"data": data.name, "device": str(device), "threads": torch.get_num_threads(),
              "one_network": {"naive_s": t_naive, "product_s": t_fast, "ratio": t_naive / t_fast},
              "per_candidate_round1": {"naive_s": naive_each, "product_s": fast_each, "ratio": naive_each / fast_each}}

    # round 2: 4 ops alive per edge. The reference marks pruned ops with alpha -1000 and still computes
    # them (softmax weight 0); the product's mask skips them. Same weights, same batch.
    rng = np.random.default_rng(1)
    four = {k: np.zeros((len(EDGES), len(OPS)), dtype=bool) for k in KINDS}
    for k in KINDS:
        for e in range(len(EDGES)):
            four[k][e, rng.choice(len(OPS), 4, replace=False)] = True
    cands2 = [(k, e, int(o)) for k in KINDS for e in range(len(EDGES)) for o in np.flatnonzero(four[k][e])]
    cands2 = cands2[:args.candidates]

    def masked(c):
        m = {k: v.copy() for k, v in four.items()}
        m[c[0]][c[1], c[2]] = False
        return m

    def naive_round2():
        for c in cands2:
            for mask in (four, masked(c)):
                net.set_alive(mask["normal"], mask["reduce"])
                for m in net.modules():  # computed with weight 0, as the reference does
                    if hasattr(m, "alive"):
                        m.alive = None
                naive_kappa(net, x)

    def fast_round2():
        for c in cands2:
            m = masked(c)
            net.set_alive(m["normal"], m["reduce"])
            fast_kappa()

    net.set_alive(four["normal"], four["reduce"])
    t_parent2, _ = timed(fast_kappa, 1)
    t_n2, _ = timed(naive_round2, 1)
    t_f2, _ = timed(fast_round2, 1)
    naive2 = t_n2 / len(cands2)
    fast2 = t_f2 / len(cands2) + t_parent2 / 112
    print(f"round 2 (4 ops/edge), κ work per candidate op: naive {naive2:.3f} s, product {fast2:.3f} s, "
          f"ratio {naive2 / fast2:.2f}x", flush=True)
    n1, n2 = 196, 112  # candidates of the two op-pruning rounds
    overall = (n1 * naive_each + n2 * naive2) / (n1 * fast_each + n2 * fast2)
    print(f"both op-pruning rounds (196 + 112 candidates), κ work: ratio {overall:.2f}x", flush=True)
    record["per_candidate_round2"] = {"naive_s": naive2, "product_s": fast2, "ratio": naive2 / fast2}
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
