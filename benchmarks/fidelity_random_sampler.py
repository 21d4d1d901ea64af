"""The random baseline's two samplers (issue 18, item 2): the share of nodes whose two edges read the
same input, over 10,000 draws of each, next to the analytic expectation (1/2+1/3+1/4+1/5)/4 and the
paper's ten published random genotypes (RANDOM_1..RANDOM_10 of the authors' P-DARTS fork,
ztcoalson/pdarts genotypes.py; only their input indices are listed here, node by node).

  python benchmarks/fidelity_random_sampler.py --out benchmarks/results/fidelity_random_sampler.json
"""
from __future__ import annotations

import argparse
import json
from fractions import Fraction

import numpy as np
from scipy.stats import binomtest

from naspoison.nas.random_search import SAMPLERS, duplicate_input_rate

# inputs of the 8 edges of the normal and of the reduction cell of RANDOM_1 .. RANDOM_10 (published data)
PUBLISHED_INPUTS = [
    ([1, 1, 0, 0, 0, 1, 0, 4], [1, 1, 1, 1, 3, 0, 1, 2]), ([0, 0, 1, 1, 0, 0, 3, 0], [1, 1, 0, 0, 2, 1, 4, 0]),
    ([1, 1, 2, 0, 2, 3, 1, 1], [0, 1, 1, 0, 0, 2, 1, 3]), ([0, 0, 2, 1, 3, 0, 1, 0], [1, 1, 2, 2, 3, 3, 3, 2]),
    ([0, 0, 1, 1, 2, 0, 1, 3], [0, 1, 2, 2, 2, 3, 3, 3]), ([0, 1, 2, 0, 2, 1, 2, 3], [0, 1, 0, 2, 2, 0, 1, 3]),
    ([0, 0, 1, 2, 2, 3, 4, 1], [1, 0, 2, 2, 1, 2, 0, 4]), ([1, 0, 0, 1, 1, 1, 0, 0], [0, 0, 1, 2, 1, 2, 4, 2]),
    ([0, 0, 0, 0, 1, 2, 0, 3], [1, 1, 2, 2, 3, 3, 1, 3]), ([1, 1, 1, 2, 1, 2, 4, 2], [0, 1, 1, 1, 2, 2, 2, 0]),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=10_000)
    ap.add_argument("--out")
    args = ap.parse_args()
    expected = sum(Fraction(1, j + 2) for j in range(4)) / 4
    pub = [c[2 * k] == c[2 * k + 1] for g in PUBLISHED_INPUTS for c in g for k in range(4)]
    out = {"draws": args.draws, "expected_reference": float(expected), "expected_fraction": str(expected),
           "published": {"duplicates": int(sum(pub)), "nodes": len(pub), "rate": float(np.mean(pub)),
                         "binomial_two_sided_p_vs_expected": binomtest(int(sum(pub)), len(pub), float(expected)).pvalue},
           "samplers": {}}
    for name, fn in SAMPLERS.items():
        rng = np.random.default_rng(0)
        rate = duplicate_input_rate([fn(rng) for _ in range(args.draws)])
        n = 8 * args.draws
        out["samplers"][name] = {"rate": rate, "nodes": n, "std_error": float(np.sqrt(rate * (1 - rate) / n))}
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
