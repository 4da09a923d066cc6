"""The diffusion process: noising, the noise-prediction loss, and guided DDIM sampling.

Training uses the DDPM forward process of ``diffusers.DDPMScheduler`` (linear betas), sampling
the deterministic DDIM sampler of ``diffusers.DDIMScheduler`` on the same betas
(``docs/design.md``, diffusion section).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Diffusion"]


class Diffusion:
    r"""A linear-beta diffusion process over ``timesteps`` steps.

    Noise loss of one image (Ho et al., 2020), summed over pixels as in the reference code:

    .. math:: \ell(x_0, y) = \lVert \epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t,\ y) \rVert^2
    """

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 clip_sample: bool = True) -> None:  # fmt: skip
        from diffusers import DDIMScheduler, DDPMScheduler

        if timesteps < 2 or not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need timesteps >= 2 and 0 < beta_start < beta_end < 1, got {timesteps}, {beta_start}, {beta_end}")
        schedule = {"num_train_timesteps": timesteps, "beta_start": beta_start, "beta_end": beta_end, "beta_schedule": "linear"}
        self.timesteps = timesteps
        self.train_scheduler = DDPMScheduler(**schedule)
        self.sample_scheduler = DDIMScheduler(**schedule, clip_sample=clip_sample)

    def random_timesteps(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` timesteps, antithetic: the second half is ``T - 1 - t`` of the first (lower-variance loss)."""
        half = torch.randint(0, self.timesteps, ((n + 1) // 2,), generator=generator)
        return torch.cat([half, self.timesteps - 1 - half])[:n]

    def noise_losses(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        cond_drop: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-image noise loss :math:`\\ell` (``[N]``); labels become the null label with probability ``cond_drop``."""
        n = len(images)
        t = self.random_timesteps(n, generator).to(images.device)
        noise = torch.randn(images.shape, generator=generator).to(images.device)
        if cond_drop > 0:
            drop = (torch.rand(n, generator=generator) < cond_drop).to(images.device)
            labels = torch.where(drop, torch.full_like(labels, model.null_label), labels)
        noisy = self.train_scheduler.add_noise(images, noise, t)
        return (model(noisy, t, labels) - noise).pow(2).flatten(1).sum(dim=1)

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        labels: Tensor,
        noise: Tensor,
        *,
        steps: int = 20,
        guidance: float = 2.0,
        batch_size: int = 256,
    ) -> Tensor:
        r"""Images for ``labels`` by DDIM (:math:`\eta = 0`) with classifier-free guidance (Ho & Salimans, 2022):

        .. math:: \tilde\epsilon = (1 + w)\,\epsilon_\theta(x_t, t, y) - w\,\epsilon_\theta(x_t, t, \varnothing)

        ``noise`` (``[N, C, H, W]``) is the starting point :math:`x_T` of each image, so the images of
        two models grown from the same noise can be compared one to one (the before/after grids).
        """
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        self.sample_scheduler.set_timesteps(steps)
        if len(noise) != len(labels):
            raise ValueError(f"need one starting noise per label, got {len(noise)} and {len(labels)}")
        out = []
        for start in range(0, len(labels), batch_size):
            x = noise[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            both = torch.cat([y, torch.full_like(y, model.null_label)])
            for t in self.sample_scheduler.timesteps:
                # conditional and unconditional predictions in one forward pass
                eps_cond, eps_null = model(torch.cat([x, x]), t.to(device), both).chunk(2)
                eps = (1 + guidance) * eps_cond - guidance * eps_null
                x = self.sample_scheduler.step(eps, t, x).prev_sample
            out.append(x.clamp(-1, 1).cpu())
        model.train(was_training)
        return torch.cat(out)
