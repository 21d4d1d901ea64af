"""The Evas score of an architecture (Evas §3.4, Eq. 6): the condition number of the **C×C
trigger NTK** — named apart from TE-NAS's N×N ``ntk_cond`` in ``naspoison.nas.metrics``.

Θ = (1/B) Σ_b J_b J_bᵀ, J_b = ∂f(x'_b)/∂θ ∈ R^{C×P}: the logits of the model f at random init on
the triggered images x' = g(x) of a random-init trigger generator g, differentiated w.r.t. the
model's weight tensors (every parameter named ``weight``: conv, linear and BN scales; the generator
is not differentiated). The score is κ(Θ) by ``metrics.kappa`` (float64 eigenvalues; a singular,
non-finite or all-zero Θ gives KAPPA_MAX = 1e12, never NaN or inf), and the architecture's score
is the median over ``inits`` independent (model, generator) initialisations on one batch.
**Lower = more exploitable.**

Choices stated (``regime="ours"``, the default; ``"reference"`` is Evas's code, ``trigger_ntk_cond``):
the model is in eval mode (its BN at init is the identity: running mean 0, var 1),
so each sample's Jacobian is that of the sample's own function, not of the batch's statistics;
the generator produces x' in train mode (batch statistics), under no_grad.

The fast path never forms J. Each sample is repeated C times and row (b, c) is back-propagated
with the one-hot of class c in a single backward pass that computes input gradients only; hooks
on every weighted layer turn (layer input, output gradient) into that row's weight gradient — for
a conv, δ·unfold(a)ᵀ with the unfolded input shared by the sample's C rows; for a linear layer δaᵀ;
for BN (eval) Σ δ⊙x̂ — and add its C×C block G Gᵀ (float32 products, float64 sum) to Θ. It
needs every weight used once per forward (true of the NB201, DARTS and ResNet networks); a
grouped conv or a BN without running statistics is refused. The reference
(``trigger_ntk_reference``, tests and benchmark) runs one forward of the whole batch and one
backward per logit.
"""
from __future__ import annotations


from naspoison.nas.metrics import kappa, named_weights
from naspoison._lazy import lazy, no_grad

torch = lazy("torch", globals())
F = lazy("torch.nn.functional", globals(), "F")
nn = lazy("torch.nn", globals())


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    wanted = {id(p) for p in named_weights(model)}
    out = []
    for m in model.modules():
        w = getattr(m, "weight", None)
        if w is None or id(w) not in wanted:
            continue
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise ValueError(f"trigger NTK: grouped convolutions are not supported ({m})")
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is None:
            raise ValueError(f"trigger NTK: BN without running statistics couples the samples ({m})")
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            raise TypeError(f"trigger NTK: no per-sample gradient rule for {type(m).__name__}")
        out.append(m)
    return out


def _row_grads(m: nn.Module, a: torch.Tensor, g: torch.Tensor, c: int) -> torch.Tensor:
    """[b, C, P_layer]: the weight gradient of each of the b·C rows (rows of a sample share its input)."""
    b = g.shape[0] // c
    if isinstance(m, nn.Conv2d):
        u = F.unfold(a[::c], m.kernel_size, m.dilation, m.padding, m.stride)  # [b, C_in·k², L]
        return torch.bmm(g.reshape(b, c * g.shape[1], -1), u.transpose(1, 2)).reshape(b, c, -1)
    if isinstance(m, nn.Linear):
        return (g[:, :, None] * a[:, None, :]).reshape(b, c, -1)
    shape = (1, -1, 1, 1)
    xhat = (a[::c] - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
    return (g.reshape(b, c, *g.shape[1:]) * xhat[:, None]).sum((3, 4))


def trigger_ntk(model: nn.Module, x: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Θ (float64, C×C) of ``model`` on (already triggered) inputs ``x``; model in eval mode."""
    layers = _weighted_layers(model)
    was, flags = model.training, [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():  # autograd then computes input gradients only; weight gradients come from the hooks
        p.requires_grad_(False)
    with torch.no_grad():
        n_classes = model(x[:1])[0].shape[1]
    theta: list[torch.Tensor] = []

    def on_forward(m, inputs, output):
        a = inputs[0].detach()

        def on_grad(g):
            rows = _row_grads(m, a, g, n_classes)
            theta.append(torch.bmm(rows, rows.transpose(1, 2)).sum(0).double())
        output.register_hook(on_grad)

    hooks = [m.register_forward_hook(on_forward) for m in layers]
    try:
        total = None
        for i in range(0, len(x), chunk):
            xb = x[i:i + chunk]
            c = n_classes
            xr = xb.repeat_interleave(c, 0).requires_grad_(True)
            out = model(xr)[0]
            torch.autograd.grad(out, xr, torch.eye(c, device=x.device, dtype=out.dtype).repeat(len(xb), 1))
            part = torch.stack(theta).sum(0)
            theta.clear()
            total = part if total is None else total + part
        return total / len(x)
    finally:
        for h in hooks:
            h.remove()
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was)


def trigger_ntk_reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The slow definition: one forward of the batch, one backward per logit (B·C backwards)."""
    was = model.training
    model.eval()
    try:
        params = named_weights(model)
        out = model(x)[0]
        b, c = out.shape
        theta = torch.zeros(c, c, dtype=torch.float64)
        for i in range(b):
            rows = []
            for k in range(c):
                g = torch.autograd.grad(out[i, k], params, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                                       for gi, p in zip(g, params)]).double())
            j = torch.stack(rows)
            theta += j @ j.T
        return theta / b
    finally:
        model.train(was)


@no_grad
def triggered(generator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = generator.training
    generator.train()
    try:
        return generator(x)
    finally:
        generator.train(was)


def trigger_ntk_coupled(model: nn.Module, x: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Θ (float64, C×C) = mean over samples i of J_i J_iᵀ, J_i the C×P Jacobian of sample i's logits from
    **one forward of the whole batch** in the model's *current* mode (train mode: BN's batch statistics
    couple the samples, as the Evas reference's ``torch.autograd.functional.jacobian`` of the batch
    output does). Rows go ``chunk`` samples (chunk·C backward passes, vmapped) at a time."""
    params = named_weights(model)
    out = model(x)[0]
    b, c = out.shape
    theta = torch.zeros(c, c, dtype=torch.float64, device=x.device)
    eye = torch.eye(b * c, device=x.device, dtype=out.dtype).view(b * c, b, c)
    for i in range(0, b, chunk):
        rows = eye[i * c:min(b, i + chunk) * c]
        grads = torch.autograd.grad(out, params, rows, retain_graph=True, is_grads_batched=True, allow_unused=True)
        j = torch.cat([(g if g is not None else torch.zeros(len(rows), *p.shape, device=x.device)).flatten(1)
                       for g, p in zip(grads, params)], 1).view(-1, c, sum(p.numel() for p in params))
        theta += torch.bmm(j, j.transpose(1, 2)).sum(0).double()
    return theta / b


REGIMES = ("ours", "reference")


def reset_generator(generator: nn.Module) -> nn.Module:
    """Eval mode with freshly reset BN running statistics (mean 0, variance 1), as the Evas reference
    scores with: its generators are built in eval mode and re-initialised by ``reset_parameters``."""
    for m in generator.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    return generator.eval()


def trigger_ntk_cond(model: nn.Module, generator: nn.Module, x01: torch.Tensor, normalise, chunk: int = 8,
                     regime: str = "ours") -> float:
    """κ of the trigger NTK for one (model, generator) pair; ``x01`` images on [0, 1], ``normalise``
    maps them to the model's input scale.

    ``regime`` ``ours``: the generator in train mode (batch statistics: a trigger that depends on the
    input), the model in eval mode (per-sample Θ, no coupling through BN). ``reference`` (Evas's
    ``search_genetic.py``): the generator in eval mode with reset running statistics — at initialisation
    its output is then close to 0.5·x + 0.25, nearly the same affine map for every input — and the model
    in train mode, Θ from the whole-batch Jacobian."""
    if regime == "ours":
        return kappa(trigger_ntk(model, normalise(triggered(generator, x01)), chunk))
    if regime != "reference":
        raise ValueError(f"unknown score regime {regime!r}; known: {', '.join(REGIMES)}")
    was_g, was_m = generator.training, model.training
    flags = [p.requires_grad for p in generator.parameters()]
    try:
        with torch.no_grad():
            xt = reset_generator(generator)(x01)
        model.train()
        return kappa(trigger_ntk_coupled(model, normalise(xt), chunk))
    finally:
        generator.train(was_g)
        model.train(was_m)
        for p, f in zip(generator.parameters(), flags):
            p.requires_grad_(f)
