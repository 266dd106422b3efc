"""Training-step cost of variational inference with each prior, on the paper's MNIST net, measured side by side.

    python training/benchmarks/bench_kl.py                       # step-time ratios (about a minute)
    python training/benchmarks/bench_kl.py --accuracy-steps 300  # + short MNIST-5k runs: full vs subsampled KL
    python training/benchmarks/bench_kl.py --saga 1 --sag 1,0.25 # + the stored-gradient estimators
    python training/benchmarks/bench_kl.py --original            # + the original implementation's DWP step
    python training/benchmarks/bench_kl.py --alt-priors P7,P5    # + the exact bound with other priors (folders)
    python training/benchmarks/bench_kl.py --alt-priors P7,P5 --sag 1 --stored-subset 1024
                                                                 # + SAG refreshing 1,024 kernels a step, both priors
    python training/benchmarks/bench_kl.py --steps 0 --noise-draws 0 --resnet-steps 3 --resnet-input 8x64,32x224 \
        --resnet-priors photo=dwp/photo-7x7,dwp/photo-3x3       # resnet18 only, at two workloads

The net is appendix H.2's final MNIST model (32 7x7 and 128 5x5 filters, 4,128 kernels, linear head), batch
128. One step is forward, negative ELBO (``elbo_loss`` with ``kl(model)``), backward and an Adam update.
Variants run round-robin, one step each per round, so a busy CPU slows them all alike; the table gives
median step times and their ratio to the N(0,1) step. The DWP priors are the bundled dwp/notmnist-7x7 and
-5x5. The KL-noise table gives the spread of the full and subsampled KL estimates at initialisation, beside
that of the data term, for scale; whether the extra noise matters is what the accuracy runs show.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `training`

from dwp_hub import DWPrior, bayesianize, elbo_loss, evaluate, kl  # noqa: E402
from dwp_hub.bayes_conv import bayes_layers  # noqa: E402
from dwp_hub.elu import ELU  # noqa: E402
from training.cli_options import CONTEXT, list_option  # noqa: E402
from training.datasets import mnist_5k  # noqa: E402
from training.research_architectures import RESEARCH_ARCHITECTURES  # noqa: E402,F401  (--alt-priors may use them)
from training.source_nets import FConvMNIST  # noqa: E402


def build(variant: str, priors: dict) -> torch.nn.Module:
    """The paper's MNIST net with its conv layers made Bayesian under `variant`'s prior.

    Variants: "deterministic", "normal", "log-uniform", "dwp-full", "dwp-sub<m>" (m kernels per layer),
    "dwp-saga-p<p>" and "dwp-sag-p<p>" (stored gradients, ⌈√n⌉ kernels per layer refreshed with probability p
    per step; dwp_hub/stored_gradients.py; "…-m<m>" refreshes m kernels instead), "dwp-original" (``as_original``);
    "<variant>@alt" builds it with ``priors["alt"]`` instead.
    """
    variant, _, other = variant.partition("@")  # "<variant>@alt": the same with the --alt-priors
    priors = priors[other] if other else {k: p for k, p in priors.items() if isinstance(k, int)}
    model = FConvMNIST(widths=(32, 128))
    if variant == "deterministic":
        return model
    if variant == "dwp-original":
        bayesianize(model, priors, train_reverse=False)
        for _, layer in bayes_layers(model):
            as_original(layer.prior.aux)
        return model
    spec = {"normal": "normal", "log-uniform": "log-uniform"}.get(variant, priors)
    subsample = int(variant.removeprefix("dwp-sub")) if variant.startswith("dwp-sub") else None
    stored, prob, subset = stored_variant(variant) or (None, 1.0, None)
    bayesianize(model, spec, subsample=subset if stored else subsample, stored_gradients=stored, refresh_prob=prob)
    return model


def stored_variant(variant: str) -> tuple[str, float, int | None] | None:
    """("saga" or "sag", refresh probability, refreshed kernels or None for ⌈√n⌉) of "dwp-<mode>-p<p>[-m<m>]"."""
    mode = next((m for m in ("saga", "sag") if variant.startswith(f"dwp-{m}-p")), None)
    if mode is None:
        return None
    prob, _, subset = variant.removeprefix(f"dwp-{mode}-p").partition("-m")
    return mode, float(prob), int(subset) if subset else None


def as_original(prior: DWPrior) -> None:
    """Make `prior` compute the DWP bound as the original implementation (github.com/bayesgroup/deep-weight-prior,
    utils.kl_dwp) did: its VAE frozen whole (no trained reverse model), every kernel each step, PyTorch's own
    ELU (expm1) and weights in the default contiguous layout. Used with ``train_reverse=False``."""
    for features in (prior.encoder.features, prior.decoder.features):
        for i, module in enumerate(features):
            if isinstance(module, ELU):
                features[i] = torch.nn.ELU(module.alpha)
    prior.to(memory_format=torch.contiguous_format)


def step_fn(model: torch.nn.Module, dataset_size: int):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    has_kl = any(hasattr(m, "log_sigma2") for m in model.modules())

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        logits = model(x)
        kl_term = kl(model) if has_kl else torch.zeros(())
        loss = elbo_loss(logits, y, kl_term, dataset_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_steps(variants: list[str], priors, args, x_all, y_all) -> dict[str, list[float]]:
    torch.manual_seed(args.seed)
    steps = {v: step_fn(build(v, priors).train(), len(x_all)) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    g = torch.Generator().manual_seed(args.seed)
    for r in range(args.warmup + args.steps):
        idx = torch.randint(0, len(x_all), (args.batch,), generator=g)
        x, y = x_all[idx], y_all[idx]
        for v in variants:
            t0 = time.perf_counter()
            steps[v](x, y)
            if r >= args.warmup:
                times[v].append(time.perf_counter() - t0)
    return times


@torch.no_grad()
def kl_noise(variants, priors, args, x_all, y_all) -> list[tuple[str, float, float, float]]:
    """(variant, mean KL, std of the KL estimate, std of the data term N·NLL over batches) at initialisation."""
    rows = []
    for v in variants:
        torch.manual_seed(args.seed)
        model = build(v, priors).train()
        kls = torch.tensor([kl(model).item() for _ in range(args.noise_draws)])
        g = torch.Generator().manual_seed(args.seed)
        data = []
        for _ in range(args.noise_draws):
            idx = torch.randint(0, len(x_all), (args.batch,), generator=g)
            data.append(elbo_loss(model(x_all[idx]), y_all[idx], torch.zeros(()), len(x_all)).item())
        rows.append((v, kls.mean().item(), kls.std().item(), torch.tensor(data).std().item()))
    return rows


def workload(text: str) -> tuple[int, int]:
    """"32x224" → (32, 224): a resnet18 batch size and image size."""
    batch, sep, size = text.partition("x")
    if not (sep and batch.isdigit() and size.isdigit() and int(batch) > 0 and int(size) >= 32):
        raise ValueError(f"expected BATCHxSIZE such as 8x64 or 32x224, got {text!r}")
    return int(batch), int(size)


def resnet18_steps(variants: list[str], args, batch: int, size: int,
                   prior_sets: dict[str, dict] | None = None) -> dict[str, list[float]]:
    """Step times of a bayesianized timm resnet18 (7x7 and 3x3 priors, N(0,1) for the 1x1 convs), `batch` images
    of size×size, round-robin like the MNIST table. Variants: "normal", "dwp-full", "dwp-sub<m>", "dwp-sag-p<p>",
    "dwp-saga-p<p>" with the notMNIST priors; "<variant>@<label>" uses the 7x7 and 3x3 priors of
    ``prior_sets[label]`` ("alt": --alt-priors; others: --resnet-priors)."""
    import timm

    models, opts = {}, {}
    for name in variants:
        v, _, other = name.partition("@")
        torch.manual_seed(args.seed)
        model = timm.create_model("resnet18", num_classes=10)
        if v == "normal":
            bayesianize(model, "normal")
        else:
            stored, prob, subset = stored_variant(v) or (None, 1.0, None)
            subsample = int(v.removeprefix("dwp-sub")) if v.startswith("dwp-sub") else None
            spec = {7: prior_sets[other][7], 3: prior_sets[other][3]} if other else \
                {7: "dwp/notmnist-7x7", 3: "dwp/notmnist-3x3"}
            bayesianize(model, spec, fallback="normal", subsample=subset if stored else subsample,
                        stored_gradients=stored, refresh_prob=prob)
        models[name] = model.train()
        opts[name] = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(args.seed)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.warmup + args.resnet_steps):
        x, y = torch.randn(batch, 3, size, size, generator=g), torch.randint(0, 10, (batch,), generator=g)
        for v in variants:
            t0 = time.perf_counter()
            loss = elbo_loss(models[v](x), y, kl(models[v]), dataset_size=50_000)
            opts[v].zero_grad(set_to_none=True)
            loss.backward()
            opts[v].step()
            if r >= args.warmup:
                times[v].append(time.perf_counter() - t0)
    return times


def resnet_prior_set(text: str) -> tuple[str, dict[int, DWPrior]]:
    """"LABEL=P7,P3" → (LABEL, {7: prior, 3: prior}): a --resnet-priors value."""
    label, sep, specs = text.partition("=")
    names = specs.split(",")
    if not (sep and label and label != "alt" and len(names) == 2 and all(names)):
        raise click.BadParameter(f"expected LABEL=P7,P3 (LABEL not 'alt'), got {text!r}", param_hint="--resnet-priors")
    return label, {k: DWPrior.from_pretrained(spec) for k, spec in zip((7, 3), names)}


def kl_gradient_noise(variants, priors, args, x_all, y_all) -> list[tuple[str, float, float]]:
    """(variant, relative error, relative bias) of each estimator's gradient of the KL w.r.t. layer 2's μ.

    All at the same parameters: the net after `--noise-train-steps` steps of SAGA training (so its tables are
    warm), copied into each variant. Over `--noise-draws` draws, relative error = mean ‖ĝ − ḡ‖² / ‖ḡ‖² and
    relative bias = ‖mean ĝ − ḡ‖² / ‖ḡ‖², with ḡ the exact bound's gradient averaged over its own draws.
    """
    stored = [v for v in variants if v.startswith(("dwp-saga", "dwp-sag-"))]
    torch.manual_seed(args.seed)
    trained = build(stored[0], priors).train()
    step = step_fn(trained, len(x_all))
    g = torch.Generator().manual_seed(args.seed)
    for _ in range(args.noise_train_steps):
        idx = torch.randint(0, len(x_all), (args.batch,), generator=g)
        step(x_all[idx], y_all[idx])

    def draw(variant: str) -> torch.Tensor:
        if variant in stored:
            model = copy.deepcopy(trained)
            mode, prob, _ = stored_variant(variant)
            for layer in (model.features[0], model.features[3]):
                layer.prior.stored.mode, layer.prior.stored.refresh_prob = mode, prob
        else:
            model = build(variant, priors).train()
            model.load_state_dict(trained.state_dict(), strict=False)
        kl(model).backward()
        return model.features[3].weight.grad.flatten().clone()

    exact = torch.stack([draw("dwp-full") for _ in range(args.noise_draws)])
    ref = exact.mean(0)
    norm = ref.square().sum().item()
    rows = []
    for v in variants:
        est = exact if v == "dwp-full" else torch.stack([draw(v) for _ in range(args.noise_draws)])
        rows.append((v, (est - ref).square().sum(1).mean().item() / norm, (est.mean(0) - ref).square().sum().item() / norm))
    return rows


def accuracy_runs(variants, priors, args, data) -> list[tuple[str, float, float, float]]:
    """Train each variant for the same steps from the same initialisation; 10-sample ensemble test accuracy."""
    x_all, y_all = data.train.tensors
    rows = []
    for v in variants:
        torch.manual_seed(args.seed)
        model = build(v, priors).train()
        step = step_fn(model, len(x_all))
        g = torch.Generator().manual_seed(args.seed)
        t0 = time.perf_counter()
        for _ in range(args.accuracy_steps):
            idx = torch.randint(0, len(x_all), (args.batch,), generator=g)
            step(x_all[idx], y_all[idx])
        seconds = time.perf_counter() - t0
        torch.manual_seed(args.seed + 1)
        xt, yt = data.test.tensors
        metrics = evaluate(model, [(xt[i:i + 500], yt[i:i + 500]) for i in range(0, len(xt), 500)], num_samples=10)
        rows.append((v, metrics["accuracy"], metrics["nll"], seconds))
    return rows


@click.command(context_settings=CONTEXT)
@click.option("--steps", type=click.IntRange(0), default=20, show_default=True,
              help="Timed steps per variant (0: skip the MNIST table).")
@click.option("--warmup", type=click.IntRange(0), default=3, show_default=True, help="Untimed rounds first.")
@click.option("--batch", type=click.IntRange(1), default=128, show_default=True, help="Batch size.")
@list_option("--subsample", convert=int, default=(64,), help="Kernels per layer, subsampled DWP bound.")
@list_option("--saga", convert=float, help="Refresh probabilities of stored-gradient variants dwp-saga-p<p> "
                                           "(none by default).")
@list_option("--sag", convert=float, help="Refresh probabilities of stored-gradient variants dwp-sag-p<p> "
                                          "(none by default).")
@click.option("--stored-subset", type=click.IntRange(1), default=None, metavar="M",
              help="Kernels a stored-gradient variant refreshes per layer and step (default ⌈√n⌉): dwp-sag-p<p>-m<M>; "
                   "with --alt-priors they run with those priors too.")
@click.option("--original", is_flag=True,
              help="Also time the original implementation's DWP step (dwp-original; about as slow as dwp-full).")
@click.option("--resnet-steps", type=click.IntRange(0), default=0, show_default=True,
              help="If > 0: also time a bayesianized timm resnet18 (N(0,1), the exact bound and dwp-sub256 with the "
                   "notMNIST priors, the stored variants, and --resnet-priors).")
@list_option("--resnet-input", convert=workload, default=("8x64",), metavar="BxS,…",
             help="resnet18 workloads, batch x image size (timm's own input is 224): the DWP bound costs the same "
                  "per step whatever the batch, the network does not.")
@click.option("--noise-train-steps", type=click.IntRange(0), default=100, show_default=True,
              help="SAGA training steps before the gradient-noise table (warm tables).")
@click.option("--threads", type=click.IntRange(1), default=None, help="Torch threads [default: torch's choice].")
@click.option("--noise-draws", type=click.IntRange(0), default=30, show_default=True,
              help="Draws for the KL-noise table (0: skip).")
@click.option("--accuracy-steps", type=click.IntRange(0), default=0, show_default=True,
              help="If > 0: short MNIST-5k runs, full vs subsampled.")
@list_option("--accuracy-variants", help="Variants of the accuracy runs [default: dwp-full, each dwp-sub<m>, normal].")
@list_option("--alt-priors", metavar="PRIOR,…",
             help="Another 7x7 and 5x5 prior, and optionally 3x3 (names or folders): adds dwp-full@alt, the exact "
                  "bound with them; with a 3x3 one, --resnet-steps also times dwp-full@alt and dwp-sub4096@alt.")
@click.option("--resnet-priors", multiple=True, metavar="LABEL=P7,P3",
              help="A 7x7 and a 3x3 prior (names or folders) whose exact bound --resnet-steps also times, as "
                   "dwp-full@LABEL (repeatable), e.g. photo=dwp/photo-7x7,dwp/photo-3x3.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of data, models and batches.")
def main(**options: Any) -> None:
    """Training-step cost of VI with each prior on the paper's MNIST net, measured side by side."""
    args = SimpleNamespace(**options)
    if args.alt_priors and len(args.alt_priors) not in (2, 3):
        raise click.BadParameter("takes a 7x7 and a 5x5 prior, and optionally a 3x3 one", param_hint="--alt-priors")
    if args.threads:
        torch.set_num_threads(args.threads)
    priors: dict = {7: DWPrior.from_pretrained("dwp/notmnist-7x7"), 5: DWPrior.from_pretrained("dwp/notmnist-5x5")}
    if args.alt_priors:
        priors["alt"] = {k: DWPrior.from_pretrained(spec) for k, spec in zip((7, 5, 3), args.alt_priors)}
    resnet_sets = dict(resnet_prior_set(text) for text in args.resnet_priors)
    data = mnist_5k(seed=args.seed)
    x_all, y_all = data.train.tensors
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, "
          f"{args.steps} timed steps per variant; dwp-sub<m>: DWP bound on m kernels per layer; "
          f"data: MNIST-5k train split ({len(x_all)} images)")

    suffix = f"-m{args.stored_subset}" if args.stored_subset else ""
    stored = [f"dwp-saga-p{p:g}{suffix}" for p in args.saga] + [f"dwp-sag-p{p:g}{suffix}" for p in args.sag]
    sub = [f"dwp-sub{m}" for m in args.subsample] + stored
    variants = ["deterministic", "normal", "log-uniform", "dwp-full", *(["dwp-full@alt"] if args.alt_priors else []),
                *(["dwp-original"] if args.original else []), *sub,
                *([f"{v}@alt" for v in stored] if args.alt_priors else [])]
    if args.steps > 0:  # 0: the resnet18 tables only
        times = time_steps(variants, priors, args, x_all, y_all)
        base = statistics.median(times["normal"])
        mean_base = statistics.mean(times["normal"])
        print(f"\n{'variant':22} {'median step':>12} {'vs N(0,1)':>10} {'vs deterministic':>17} {'mean step':>10} "
              f"{'mean vs N(0,1)':>15}")
        det = statistics.median(times["deterministic"])
        for v in variants:  # the mean is the cost of estimators that do not evaluate the VAE every step
            med, mean = statistics.median(times[v]), statistics.mean(times[v])
            print(f"{v:22} {1000 * med:9.1f} ms {med / base:9.2f}x {med / det:16.2f}x {1000 * mean:7.1f} ms "
                  f"{mean / mean_base:14.2f}x")

    if args.noise_draws > 0:
        print(f"\nKL estimate at initialisation over {args.noise_draws} draws (nats), against the data term N·NLL:")
        print(f"{'variant':16} {'mean KL':>12} {'std KL':>10} {'std data term':>14}")
        for v, mean, std, data_std in kl_noise(["dwp-full", *sub], priors, args, x_all, y_all):
            print(f"{v:16} {mean:12.1f} {std:10.1f} {data_std:14.1f}")

    if args.resnet_steps > 0:
        rvariants = ["normal", "dwp-full", "dwp-sub256"] + [v for v in sub if v.startswith(("dwp-saga", "dwp-sag-"))]
        if 3 in priors.get("alt", {}):
            rvariants += ["dwp-full@alt", "dwp-sub4096@alt"]
            resnet_sets["alt"] = priors["alt"]
        rvariants += [f"dwp-full@{label}" for label in resnet_sets if label != "alt"]
        for batch, size in args.resnet_input:
            rtimes = resnet18_steps(rvariants, args, batch, size, resnet_sets)
            rbase = statistics.mean(rtimes["normal"])
            print(f"\ntimm resnet18, batch {batch} at {size}x{size}, {args.resnet_steps} timed steps (mean, the cost "
                  "of random refreshes):")
            print(f"{'variant':22} {'mean step':>10} {'vs N(0,1)':>10}")
            for v in rvariants:
                mean = statistics.mean(rtimes[v])
                print(f"{v:22} {1000 * mean:7.1f} ms {mean / rbase:9.2f}x", flush=True)

    if (args.saga or args.sag) and args.noise_draws > 0:
        print(f"\nGradient of the KL w.r.t. layer 2's μ after {args.noise_train_steps} stored-gradient steps, "
              f"{args.noise_draws} "
              "draws each, against the exact bound's mean gradient (relative squared error and bias):")
        print(f"{'variant':16} {'rel. error':>11} {'rel. bias':>10}")
        for v, err, bias in kl_gradient_noise(["dwp-full", *sub], priors, args, x_all, y_all):
            print(f"{v:16} {err:11.4f} {bias:10.4f}")

    if args.accuracy_steps > 0:
        print(f"\n{args.accuracy_steps} training steps each on MNIST-5k ({len(x_all)} train / "
              f"{len(data.test.tensors[0])} test), 10-sample ensemble:")
        print(f"{'variant':16} {'test acc':>9} {'test NLL':>9} {'train time':>11}")
        for v, acc, nll, seconds in accuracy_runs(args.accuracy_variants or ["dwp-full", *sub, "normal"],
                                                  priors, args, data):
            print(f"{v:16} {acc:9.4f} {nll:9.4f} {seconds:9.1f} s")


if __name__ == "__main__":
    main()
