"""Built-in zero-shot label sets with prompt templates; users add their own in the config file.

A label's text embedding is the mean of its templates' embeddings (L2-normalised), the usual prompt
ensemble for SigLIP/CLIP zero-shot. The templates are Aris's defaults written after the style of
Google's MedSigLIP examples ("a photo of an arm with a rash"); they are not the prompts behind the
model card's zero-shot figures, so expect different numbers from them.

Your own sets, in ``~/.config/aris/config.toml``::

    [embed_label_sets]
    fracture = ["no fracture", "fracture of the wrist"]

They take the ``--template`` option's templates (default ``{label}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aris.errors import ConfigError

if TYPE_CHECKING:
    from aris.config import ArisSettings


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[str, ...]
    templates: tuple[str, ...]
    description: str = ""


LABEL_SETS: dict[str, LabelSet] = {
    # CheXpert's 13 findings plus "no finding" (the label space of MedSigLIP's CXR zero-shot evaluation).
    "cxr": LabelSet(
        (
            "no finding",
            "atelectasis",
            "cardiomegaly",
            "consolidation",
            "edema",
            "enlarged cardiomediastinum",
            "fracture",
            "lung lesion",
            "lung opacity",
            "pleural effusion",
            "pleural other",
            "pneumonia",
            "pneumothorax",
            "support devices",
        ),
        ("a chest X-ray showing {label}", "chest radiograph with {label}"),
        "chest X-ray findings",
    ),
    # Common conditions of SCIN (the skin-condition image set MedSigLIP's dermatology examples use).
    "skin": LabelSet(
        (
            "eczema",
            "allergic contact dermatitis",
            "insect bite",
            "urticaria",
            "psoriasis",
            "folliculitis",
            "tinea",
            "herpes zoster",
            "acne",
            "drug rash",
        ),
        ("a photo of skin with {label}", "a close-up photo of a rash: {label}"),
        "skin conditions",
    ),
    # NCT-CRC-HE-100K's nine colorectal tissue classes (the set Google's fine-tuning notebook uses).
    "pathology": LabelSet(
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        ("an H&E image of {label}", "a histopathology patch of {label}"),
        "colorectal tissue classes (H&E)",
    ),
}
ALIASES = {"chest-xray": "cxr", "dermatology": "skin", "nct-crc-he": "pathology", "tissue": "pathology"}


def label_set(name: str, settings: ArisSettings | None = None) -> LabelSet:
    """A built-in set, or one from the ``embed_label_sets`` setting (which may not replace a built-in)."""
    key = ALIASES.get(name, name)
    if key in LABEL_SETS:
        return LABEL_SETS[key]
    own = dict(settings.embed_label_sets) if settings is not None else {}
    if key in own:
        labels = tuple(str(x).strip() for x in own[key] if str(x).strip())
        if len(labels) < 2:
            raise ConfigError(f"label set {key!r} (config embed_label_sets) needs at least two labels")
        return LabelSet(labels, ("{label}",), "from your config")
    names = sorted({*LABEL_SETS, *own})
    raise ConfigError(f"unknown label set {name!r}; choose one of {', '.join(names)} or give --labels")


def prompts(label: str, templates: tuple[str, ...] | list[str]) -> list[str]:
    out = []
    for t in templates:
        if "{label}" not in t:
            raise ConfigError(f"template {t!r} has no {{label}} placeholder")
        out.append(t.replace("{label}", label))
    return out
