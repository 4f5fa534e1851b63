"""``ZeroshotCLIP``: CLIP with hand-written prompts (CoOp's per-dataset templates), no training."""
import torch
import torch.nn as nn

from textrefiner.framework import register_trainer
from textrefiner.hosts.coop import tokenize
from textrefiner.hosts.encoders import ImageEncoder, TextEncoder
from textrefiner.precision import float32_under_autocast

from .base import PromptTrainer

DEFAULT_TEMPLATE = "a photo of a {}."
CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}


class ZeroshotModel(nn.Module):
    """Frozen CLIP whose classifier is the encoded hand-written prompts."""

    def __init__(self, clip_model: nn.Module, prompts):
        super().__init__()
        self.clip_model = clip_model
        self.image_encoder = ImageEncoder(clip_model.visual)
        self.text_encoder = TextEncoder(clip_model)
        self.register_buffer("tokenized_prompts", tokenize(prompts), persistent=False)

    @torch.no_grad()
    def text_features(self) -> torch.Tensor:
        """CLIP's ``encode_text``, each prompt run only up to its end-of-text token (same features)."""
        embedded = self.clip_model.token_embedding(self.tokenized_prompts).type(self.text_encoder.dtype)
        features = self.text_encoder(embedded, self.tokenized_prompts)
        return features / features.norm(dim=-1, keepdim=True)

    def forward(self, image: torch.Tensor, text_features=None) -> torch.Tensor:
        if text_features is None:
            text_features = self.text_features()
        return self.logits(self.image_encoder(image).global_feature, text_features)

    @float32_under_autocast
    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.clip_model.logit_scale.exp() * image_features @ text_features.t()


@register_trainer
class ZeroshotCLIP(PromptTrainer):
    """Evaluation only (``train.py --eval-only``); nothing is trained or saved."""

    host_key = "COOP"

    def build_model(self) -> None:
        clip_model = self.load_clip()
        template = CUSTOM_TEMPLATES.get(self.cfg.DATASET.NAME, DEFAULT_TEMPLATE)
        prompts = [template.format(c.replace("_", " ")) for c in self.dm.dataset.classnames]
        print(f"Prompts: {prompts}")
        self.model = ZeroshotModel(clip_model, prompts).to(self.device).eval()

    def train(self) -> None:
        raise RuntimeError("ZeroshotCLIP has nothing to train: run train.py with --eval-only")
