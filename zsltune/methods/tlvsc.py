"""TL-VSC: two-level adversarial visual-semantic coupling for generalized zero-shot learning (Chandhok &
Balasubramanian, 2021).

A conditional WGAN-GP generator G(z, h) -> x̂ synthesises image features of a class from its attributes h; an
inference network I(x) -> ĥ (hidden layer f) maps features back to attributes. Three critics: D1(x, h) on
generated features, D2(h, x) on inferred attributes, and the joint critic D3(x, h) that separates ⟨x, ĥ⟩ from
⟨x̂, h⟩. A Sinkhorn distance aligns the class centres of ĥ with the true attributes. Losses (the critics
maximise, G and I jointly minimise L_GI, Eq. 14 with its signs written out):

    critics:  L_WGAN1 = E D1(x,h) - E D1(x̂,h) - λ GP1          L_WGAN2 = E D2(h,x) - E D2(ĥ,x) - λ GP2
              L_D3    = E D3(x,ĥ) - E D3(x̂,h) - λ GP3 (concatenated gradient of x̃ and h̃, one ε)
    G and I:  L_GI = [-E D1(x̂,h) + β L_CLS] + α1 [-E D2(ĥ,x) + γ L_wass] + α2 [E D3(x,ĥ) - E D3(x̂,h)]

L_CLS is the cross-entropy of x̂ under C_pre, a linear softmax over the seen classes pretrained on the real training
features once per trial and frozen. Recognition (Sec. 3.4): G and I frozen, a linear softmax over seen ∪ unseen is
fitted on the real training features plus ``n_syn`` generated features per unseen class, each mapped to
φ(x) = [x; f(x); ĥ(x)] (x in its min-max scale, f and ĥ each rescaled by one number to x's spread); it never sees
an evaluation image.

Choices the paper leaves to its missing supplementary, taken from f-CLSWGAN (Xian et al., 2018), whose architecture
it follows: features min-max scaled to [0, 1] on the training images, the generator ending in a ReLU (``g_output``);
attributes L2-normalised; one Adam (β = 0.5, 0.999) for G and I together and one for the three critics; ``n_critic``
critic updates on fresh batches per G/I update, which reuses the last batch; the class centres of ĥ kept in a
running memory (:class:`~zsltune.layers.gan.CentreMemory`), so L_wass is defined when a batch holds one image of a
class; Sinkhorn ε relative to the cost's mean.

Budget: one optimisation step is one generator iteration (n_critic critic updates + one G/I update), which costs
batch_size x (n_critic + 1) samples under a compute budget (``--budget compute``). Every Tune iteration ends with
the recognition fit, so ASHA sees validation H of the current generator. ``ablation`` selects the paper's Table 2
rows: ``gen`` (S1: G, D1, L_CLS; classifier on x), ``gen+inf`` (S2: + I, D2, D3), ``gen+inf+feat`` (S3: classifier
on [x; f; ĥ]), ``full`` (S4: + Wasserstein alignment).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zsltune.data.protocol import StageData
from zsltune.errors import TrialDiverged
from zsltune.layers.gan import CentreMemory, generator_health, gradient_penalty, mlp, sinkhorn_distance
from zsltune.methods.base import LossMeter
from zsltune.methods.feature_trainer import FeatureTrainer
from zsltune.methods.hparams import HP, Choice, Float, Int
from zsltune.methods.prep import normalise_attributes
from zsltune.methods.registry import register_method

#: the rows of the paper's Table 2, in order
ABLATIONS = ("gen", "gen+inf", "gen+inf+feat", "full")
#: the generator's output activation
G_OUTPUTS = ("relu", "sigmoid")
#: a generated feature spread below this fraction of the real one is a collapsed generator: once the spread has
#: been 10x higher, or after COLLAPSE_AFTER generator iterations (an untrained generator's output is near-constant,
#: ~0 from a ReLU and ~0.5 from a sigmoid: spread ~0)
COLLAPSED_SPREAD = 0.02
COLLAPSE_AFTER = 1000
#: a Wasserstein estimate beyond this is an exploding critic
EXPLODED = 1e4


class TLVSCNet(nn.Module):
    """G, I and the three critics; ``centres``: the running memory of ĥ's class centres."""

    def __init__(
        self, d_x: int, d_h: int, d_z: int, hidden: int, n_seen: int, momentum: float, g_output: str = "relu"
    ) -> None:
        super().__init__()
        self.d_z = d_z
        self.G = mlp(d_z + d_h, hidden, d_x, out=nn.ReLU() if g_output == "relu" else nn.Sigmoid())  # [z; h] -> x̂
        self.I_hidden = nn.Sequential(nn.Linear(d_x, hidden), nn.LeakyReLU(0.2))  # x -> f
        self.I_out = nn.Linear(hidden, d_h)  # f -> ĥ
        for m in (self.I_hidden[0], self.I_out):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        self.D1 = mlp(d_x + d_h, hidden, 1)  # [x; h]
        self.D2 = mlp(d_h + d_x, hidden, 1)  # [h; x]
        self.D3 = mlp(d_x + d_h, hidden, 1)  # [x; h], joint
        self.centres = CentreMemory(n_seen, d_h, momentum)

    def generate(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.G(torch.cat([z, h], 1))  # (B, D)

    def infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.I_hidden(x)  # (B, H)
        return f, self.I_out(f)  # (B, H), (B, P)

    def d1(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.D1(torch.cat([x, h], 1))

    def d2(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.D2(torch.cat([h, x], 1))

    def d3(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.D3(torch.cat([x, h], 1))

    def critics(self) -> list[nn.Parameter]:
        return [*self.D1.parameters(), *self.D2.parameters(), *self.D3.parameters()]

    def generators(self) -> list[nn.Parameter]:
        return [*self.G.parameters(), *self.I_hidden.parameters(), *self.I_out.parameters()]


def fit_softmax(
    x: torch.Tensor, y: torch.Tensor, classes: int, *, lr: float, epochs: int, batch: int, generator: torch.Generator
) -> nn.Linear:
    """A linear softmax (D -> classes) fitted with Adam on rows x (N, D), labels y (N,), on x's device."""
    clf = nn.Linear(x.shape[1], classes).to(x.device)
    nn.init.zeros_(clf.weight)  # a convex problem: zero start, so the fit depends on ``generator`` alone
    nn.init.zeros_(clf.bias)
    opt = torch.optim.Adam(clf.parameters(), lr=lr, betas=(0.5, 0.999))
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0], generator=generator, device=x.device).split(batch):
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return clf.requires_grad_(False)


@register_method("tlvsc")
class TLVSC(FeatureTrainer):
    """TL-VSC on precomputed features; loss weights, sizes and the ablation row are hyperparameters."""

    #: the training features held transformed whole: C_pre and the recognition fit use them all at once
    whole_features: ClassVar[bool] = True

    # the paper gives no sizes or rates (Chandhok & Balasubramanian, 2021): f-CLSWGAN's, whose architecture it follows
    # (Xian et al., 2018); alpha2 per dataset from its Fig. 2b
    hparams: ClassVar[dict[str, HP]] = {
        "ablation": Choice(
            ABLATIONS, default="full", help="Table 2 row: gen (S1), gen+inf (S2), gen+inf+feat (S3), full (S4)"
        ),
        "lambda_gp": Float(default=10.0, low=0, help="gradient-penalty weight λ of all three critics"),
        "beta": Float(default=0.01, low=0, help="weight of L_CLS (C_pre's cross-entropy of generated features)"),
        "alpha1": Float(default=1.0, low=0, help="weight of the inference module"),
        "gamma_wass": Float(
            default=1.0, low=0, help="weight γ of the Wasserstein alignment inside the inference module"
        ),
        "alpha2": Float(
            default={"AWA1": 10.0, "AWA2": 10.0, "APY": 10.0, "*": 1.0},
            low=0,
            help="weight of the joint maximisation (D3)",
        ),
        "n_critic": Int(default=5, help="critic updates per G/I update"),
        "sinkhorn_eps": Float(default=0.1, gt=0, help="entropic regularisation, relative to the cost's mean"),
        "sinkhorn_iters": Int(default=100),
        "lr": Float(default=1e-4, gt=0, help="Adam lr of G, I and the critics (β = 0.5, 0.999)"),
        "batch_size": Int(default=64),
        "hidden": Int(default=4096, help="hidden width of every network"),
        "g_output": Choice(G_OUTPUTS, default="relu", help="the generator's last activation"),
        "z_dim": Int(default=0, low=0, help="noise size; 0: the attribute size d_h (f-CLSWGAN)"),
        "n_syn": Int(
            default={"AWA1": 1800, "AWA2": 1800, "*": 300},
            help="generated features per unseen class for the recognition classifier",
        ),
        "cls_lr": Float(default=1e-3, gt=0),
        "cls_epochs": Int(default=25),
        "pre_epochs": Int(default=20, help="epochs of C_pre on the real training features"),
        "centre_momentum": Float(default=0.9, low=0, high=0.999),
    }

    def __init__(self, config: Mapping[str, Any], data: StageData, **kw: Any) -> None:
        super().__init__(config, data, **kw)  # x_train (N, D) in [0, 1], y_train (N,): see FeatureTrainer
        c = self.config
        level = ABLATIONS.index(c["ablation"])
        self.use_inference, self.use_phi, self.use_wass = level >= 1, level >= 2, level >= 3
        self.att = self.to_device(normalise_attributes(data.attributes, data.n_seen, "l2"))  # (C, P), unit rows
        d_x, d_h = data.feature_dim, data.attribute_dim
        d_z = int(c["z_dim"]) or d_h
        self.model = TLVSCNet(
            d_x, d_h, d_z, int(c["hidden"]), data.n_seen, float(c["centre_momentum"]), str(c["g_output"])
        ).to(self.device)
        lr = float(c["lr"])
        self.opt_gi = torch.optim.Adam(self.model.generators(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.model.critics(), lr=lr, betas=(0.5, 0.999))
        # C_pre: a softmax over the seen classes on the real training features, fitted once and frozen
        self.c_pre = fit_softmax(
            self.x_train, self.y_train, data.n_seen, lr=1e-3, epochs=int(c["pre_epochs"]),
            batch=256, generator=self.generator,
        )  # fmt: skip
        width = d_x + (int(c["hidden"]) + d_h if self.use_phi else 0)
        self.classifier = nn.Linear(width, data.num_classes).to(self.device)  # refitted at every evaluation
        self.register_phi_stats(torch.zeros(width, device=self.device), torch.ones(width, device=self.device))
        self.peak_spread = 0.0  # the highest generated/real spread ratio so far (collapse detection)
        self.eval_seed = self.seed  # the recognition fit's own stream (checkpointed: a resume evaluates the same)

    def feature_norm(self) -> str:
        """Min-max to [0, 1] on the training images, what the generator's ReLU/sigmoid output covers (f-CLSWGAN,
        Xian et al., 2018)."""
        return "minmax"

    def register_phi_stats(self, mean: torch.Tensor, sd: torch.Tensor) -> None:
        self.phi_mean, self.phi_sd = mean, sd

    def steps_per_epoch(self) -> int:
        # one step is a generator iteration over n_critic + 1 batches; a pass is N / (B · n_critic) of them
        per = int(self.config["batch_size"]) * int(self.config["n_critic"])
        return max(1, len(self.data.y_train) // per)

    def step_cost(self) -> float:
        # a generator iteration: n_critic critic batches and one G/I batch
        return float(int(self.config["batch_size"]) * (int(self.config["n_critic"]) + 1))

    # ---- losses ---------------------------------------------------------------------------------------------
    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.model.d_z, generator=self.generator, device=self.device)  # (n, d_z)

    def critic_loss(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The three critics' losses to minimise (the negated L_WGAN1, L_WGAN2, L_D3) on one real batch."""
        m, lam = self.model, float(self.config["lambda_gp"])
        with torch.no_grad():
            x_fake = m.generate(h, self.noise(x.shape[0]))  # (B, D)
            h_inf = m.infer(x)[1] if self.use_inference else h  # (B, P)
        eps = torch.rand(x.shape[0], 1, generator=self.generator, device=self.device)  # (B, 1), shared by all
        w1 = m.d1(x, h).mean() - m.d1(x_fake, h).mean()  # Wasserstein estimate of D1
        gp1 = gradient_penalty(m.d1, (x, h), (x_fake, h), eps)
        loss, out = -w1 + lam * gp1, {"w1": w1, "gp1": gp1}
        if self.use_inference:
            w2 = m.d2(h, x).mean() - m.d2(h_inf, x).mean()
            gp2 = gradient_penalty(m.d2, (h, x), (h_inf, x), eps)
            w3 = m.d3(x, h_inf).mean() - m.d3(x_fake, h).mean()
            gp3 = gradient_penalty(m.d3, (x, h_inf), (x_fake, h), eps)  # x̃ = εx + (1-ε)x̂, h̃ = εĥ + (1-ε)h
            loss = loss - w2 + lam * gp2 - w3 + lam * gp3
            out.update(w2=w2, gp2=gp2, w3=w3, gp3=gp3)
        return loss, out

    def generator_loss(
        self, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_GI (Eq. 14) on one real batch; also the generated batch's spread against the real one's."""
        m, c = self.model, self.config
        x_fake = m.generate(h, self.noise(x.shape[0]))  # (B, D)
        cls = F.cross_entropy(self.c_pre(x_fake), y)
        loss = -m.d1(x_fake, h).mean() + float(c["beta"]) * cls
        out = {"cls": cls, "spread": x_fake.std(0).mean() / x.std(0).mean().clamp_min(1e-12)}
        if self.use_inference:
            h_inf = m.infer(x)[1]  # (B, P)
            inf = -m.d2(h_inf, x).mean()
            if self.use_wass:
                centres = m.centres(h_inf, y)  # (C_s, P)
                wass = sinkhorn_distance(
                    centres, self.att[: self.data.n_seen], eps=float(c["sinkhorn_eps"]), iters=int(c["sinkhorn_iters"])
                )
                inf = inf + float(c["gamma_wass"]) * wass
                out["wass"] = wass
            joint = m.d3(x, h_inf).mean() - m.d3(x_fake, h).mean()
            loss = loss + float(c["alpha1"]) * inf + float(c["alpha2"]) * joint
            out["joint"] = joint
        return loss, out

    def train_steps(self, steps: int) -> dict[str, float]:
        n_critic, bs = int(self.config["n_critic"]), int(self.config["batch_size"])
        cuts = self.next_batches(steps * n_critic, self.y_train.shape[0], bs)
        meter = LossMeter(self.device)
        for s in range(steps):
            for idx in cuts[s * n_critic : (s + 1) * n_critic]:
                x, y = self.x_train[idx], self.y_train[idx]
                with self.autocast():
                    d_loss, d_terms = self.critic_loss(x, self.att[y])
                self.opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                self.opt_d.step()
            for p in self.model.critics():
                p.requires_grad_(False)
            with self.autocast():
                g_loss, g_terms = self.generator_loss(x, self.att[y], y)
            self.opt_gi.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_gi.step()
            for p in self.model.critics():
                p.requires_grad_(True)
            meter.add({"d_loss": d_loss, "g_loss": g_loss, **d_terms, **g_terms})
        out = meter.means(steps)
        self.check_health(out)
        return out

    def check_health(self, h: dict[str, float]) -> None:
        """End a collapsed or exploding run (a configuration that fails the same way again: not retried)."""
        spread = h.get("spread", 1.0)
        self.peak_spread = max(self.peak_spread, spread)
        grown = self.peak_spread >= 10 * COLLAPSED_SPREAD or self.step >= COLLAPSE_AFTER
        if spread < COLLAPSED_SPREAD and grown:
            raise TrialDiverged(
                f"generator collapsed at step {self.step}: generated features spread {h['spread']:.4f}x the real "
                f"ones (lower lr or beta, or raise lambda_gp)"
            )
        worst = max((abs(h[k]) for k in ("w1", "w2", "w3") if k in h), default=0.0)
        if worst > EXPLODED:
            raise TrialDiverged(
                f"critic exploded at step {self.step}: Wasserstein estimate {worst:.3g} (lower lr, raise lambda_gp)"
            )

    # ---- recognition ----------------------------------------------------------------------------------------
    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x) = [x; f(x); ĥ(x)] (S3, S4) or x (S1, S2), for features x (n, D) in the training scale."""
        if not self.use_phi:
            return x
        f, h = self.model.infer(x)
        return torch.cat([x, f, h], 1)

    @torch.no_grad()
    def fit_classifier(self, supplied: np.ndarray | None = None) -> None:
        """The recognition softmax on real training features + ``n_syn`` generated ones per unseen class;
        ``supplied``: raw-scale unseen features (U·n_syn, D) in class order from another generator instead (a
        reference generator judged by this method's own classifier)."""
        c, d = self.config, self.data
        self.model.eval()
        gen = torch.Generator(device=self.device).manual_seed(self.eval_seed * 1_000_003 + self.epoch)
        n_syn, unseen = int(c["n_syn"]), torch.arange(d.n_seen, d.num_classes, device=self.device)
        y_syn = unseen.repeat_interleave(n_syn)  # (U·n_syn,)
        z = torch.randn(y_syn.shape[0], self.model.d_z, generator=gen, device=self.device)
        if supplied is None:
            x_syn = self.model.generate(self.att[y_syn], z)  # (U·n_syn, D)
        elif supplied.shape != (y_syn.shape[0], d.feature_dim):
            raise ValueError(f"supplied must be ({y_syn.shape[0]}, {d.feature_dim}), got {supplied.shape}")
        else:
            x_syn = self.prep_features(self.to_device(supplied))
        x = torch.cat([self.phi(self.x_train), self.phi(x_syn)])  # (N + U·n_syn, D')
        y = torch.cat([self.y_train, y_syn])
        mean, sd = torch.zeros_like(x[0]), self.block_scales(x)
        self.register_phi_stats(mean, sd)
        with torch.enable_grad():
            clf = fit_softmax(
                (x - mean) / sd, y, d.num_classes, lr=float(c["cls_lr"]), epochs=int(c["cls_epochs"]),
                batch=128, generator=gen,
            )  # fmt: skip
        self.classifier.load_state_dict(clf.state_dict())

    def block_scales(self, x: torch.Tensor) -> torch.Tensor:
        """Per-column divisors (D',) for φ rows ``x``: x stays in its min-max scale, f and ĥ each divided by one
        number so that their mean column sd is x's. Per-column standardisation inflates the columns where generated
        and real features differ slightly and the softmax learns "real: a seen class" (demo val stage, one generator:
        H 0.15 standardised, 0.30 in the min-max scale; benchmarks/README.md, TL-VSC)."""
        out = torch.ones(x.shape[1], device=x.device)  # (D',)
        if not self.use_phi:  # φ = x: nothing to rescale
            return out
        sd = x.std(0)  # (D',)
        d_x, d_f = self.data.feature_dim, int(self.config["hidden"])
        ref = sd[:d_x].mean().clamp_min(1e-6)
        for lo, hi in ((d_x, d_x + d_f), (d_x + d_f, sd.shape[0])):
            out[lo:hi] = sd[lo:hi].mean().clamp_min(1e-6) / ref
        return out

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax logits (n, C) of evaluation images x (n, D) (raw features, scaled as the training ones)."""
        z = (self.phi(self.prep_features(x)) - self.phi_mean) / self.phi_sd
        return self.classifier(z)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.fit_classifier()
        return {**super().evaluate(), **self.health()}

    @torch.no_grad()
    def health(self, per_class: int = 100) -> dict[str, float]:
        """The generator against the real training features of the seen classes (issue: features on the real
        manifold): :func:`~zsltune.layers.gan.generator_health` on ``per_class`` generated features a class."""
        n_seen = self.data.n_seen
        gen = torch.Generator(device=self.device).manual_seed(self.eval_seed * 1_000_003 + self.epoch + 1)
        y = torch.arange(n_seen, device=self.device).repeat_interleave(per_class)  # (S·n,)
        x = self.model.generate(self.att[y], torch.randn(y.shape[0], self.model.d_z, generator=gen, device=self.device))
        return generator_health(self.x_train, self.y_train, x, y, n_seen)

    def extra_state(self) -> dict[str, Any]:
        return {
            "phi_mean": self.phi_mean.cpu(),
            "phi_sd": self.phi_sd.cpu(),
            "peak_spread": self.peak_spread,
            "eval_seed": self.eval_seed,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "phi_mean" in state:
            self.register_phi_stats(state["phi_mean"].to(self.device), state["phi_sd"].to(self.device))
        self.peak_spread = float(state.get("peak_spread", 0.0))
        self.eval_seed = int(state.get("eval_seed", self.eval_seed))
