"""Class-wise unlearning of class-conditional diffusion models (``dualoptim diffusion``).

- ``config``: the typed options; presets in ``dualoptim/configs/diffusion/``
- ``data``: labelled images in [-1, 1] (Fashion-MNIST offline; CIFAR-10, ImageNet via torchvision)
- ``models``: diffusers ``UNet2DModel`` / ``DiTTransformer2DModel`` behind one noise-prediction call, EMA
- ``process``: DDPM noising and noise loss, guided DDIM sampling
- ``training``, ``originals``: the original denoiser and the project's classifier, trained once and cached
- ``methods/``: GA, RL, SA, SalUn, SFRon as forget and retain losses; ``masks``: their weight masks
- ``loop``: the unlearning loop of every method and strategy
- ``metrics``: FA, FD (classifier features), FID when its weights are present
- ``benchmark``, ``results``, ``report``: runs, the results envelope, table, figure and sample grids
"""

__all__: list[str] = []
