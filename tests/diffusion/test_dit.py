"""The DiT path on tiny random modules: noise prediction on latents, the null label, VAE round trip shapes."""

import torch

from dualoptim.diffusion.models import LATENT_SCALE, DiTDenoiser


def _tiny_dit():
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=1, sample_size=4, patch_size=2, num_embeds_ada_norm=3)  # fmt: skip
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 8),
                        latent_channels=4, norm_num_groups=4, sample_size=8)  # fmt: skip
    return DiTDenoiser(transformer, vae, transformer.config.num_embeds_ada_norm)


def test_dit_predicts_noise_of_the_latent_shape_and_takes_the_null_label():
    model = _tiny_dit()
    assert model.num_classes == 3 and model.null_label == 3
    x = torch.randn(2, 4, 4, 4)
    eps = model(x, torch.tensor([10, 500]), torch.tensor([0, model.null_label]))
    assert eps.shape == x.shape  # the learned-variance channels are dropped
    assert not any(p.requires_grad for p in model.vae.parameters())  # only the transformer is unlearned


def test_dit_latents_are_scaled_and_decode_to_images_in_range():
    model = _tiny_dit()
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    latents = model.encode(images)
    assert latents.shape == (2, 4, 4, 4)
    torch.manual_seed(1)
    raw = model.vae.encode(images).latent_dist.sample()
    torch.manual_seed(1)
    assert torch.allclose(model.encode(images), raw * LATENT_SCALE)
    decoded = model.decode(latents)
    assert decoded.shape == images.shape and decoded.min() >= -1 and decoded.max() <= 1
