"""The MedGemma releases Aris knows, what each can do, and what is on this machine.

Nothing is fetched silently: loading a model that is absent fails with the ``aris pull``
command that gets it; ``aris pull`` is the only code that downloads.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from aris.errors import ArisError, ModelNotFoundError
from aris.notice import HAI_DEF_TERMS

logger = logging.getLogger(__name__)

GGUF_QUANTS = ("Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "BF16")


@dataclass(frozen=True)
class ModelInfo:
    id: str
    family: str
    params: str
    modalities: tuple[str, ...]
    engine: str  # transformers | llamacpp
    context: int = 131072
    thinking: bool = False
    notes: str = ""
    quants: tuple[str, ...] = ()
    base: str | None = None  # for GGUF builds: the release they were converted from

    @property
    def vision(self) -> bool:
        return "image" in self.modalities


REGISTRY: dict[str, ModelInfo] = {
    m.id: m
    for m in [
        ModelInfo(
            "google/medgemma-1.5-4b-it",
            "MedGemma 1.5",
            "4B",
            ("text", "image"),
            "transformers",
            thinking=True,
            notes="Main target (Jan 2026): 2D images, CT/MRI slices, WSI patches, lab-report pages.",
        ),
        ModelInfo(
            "google/medgemma-4b-it",
            "MedGemma 1",
            "4B",
            ("text", "image"),
            "transformers",
            notes="Instruction-tuned; same architecture as 1.5.",
        ),
        ModelInfo(
            "google/medgemma-4b-pt",
            "MedGemma 1",
            "4B",
            ("text", "image"),
            "transformers",
            notes="Pre-trained (not instruction-tuned): for fine-tuning.",
        ),
        ModelInfo(
            "google/medgemma-27b-text-it",
            "MedGemma 1",
            "27B",
            ("text",),
            "transformers",
            thinking=True,
            notes="Text only; supports thinking.",
        ),
        ModelInfo(
            "google/medgemma-27b-it",
            "MedGemma 1",
            "27B",
            ("text", "image"),
            "transformers",
            notes="Multimodal 27B.",
        ),
        ModelInfo(
            "unsloth/medgemma-1.5-4b-it-GGUF",
            "MedGemma 1.5 GGUF",
            "4B",
            ("text", "image"),
            "llamacpp",
            quants=GGUF_QUANTS,
            base="google/medgemma-1.5-4b-it",
            notes="llama.cpp build: model .gguf + mmproj projector (no mmproj, no vision).",
        ),
        ModelInfo(
            "unsloth/medgemma-4b-it-GGUF",
            "MedGemma 1 GGUF",
            "4B",
            ("text", "image"),
            "llamacpp",
            quants=GGUF_QUANTS,
            base="google/medgemma-4b-it",
        ),
        ModelInfo(
            "unsloth/medgemma-27b-text-it-GGUF",
            "MedGemma 1 GGUF",
            "27B",
            ("text",),
            "llamacpp",
            quants=GGUF_QUANTS,
            base="google/medgemma-27b-text-it",
            thinking=True,
        ),
        ModelInfo(
            "unsloth/medgemma-27b-it-GGUF",
            "MedGemma 1 GGUF",
            "27B",
            ("text", "image"),
            "llamacpp",
            quants=GGUF_QUANTS,
            base="google/medgemma-27b-it",
        ),
    ]
}


@dataclass
class LocalModel:
    id: str
    path: Path
    source: str  # "hf-cache" | "aris-home" | "folder"
    files: list[str] = field(default_factory=list)


def _hf_cached() -> dict[str, LocalModel]:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # an absent or unreadable cache means nothing is cached
        return {}
    out: dict[str, LocalModel] = {}
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        revs = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        if revs:
            out[repo.repo_id] = LocalModel(
                repo.repo_id, revs[0].snapshot_path, "hf-cache", sorted(f.file_name for f in revs[0].files)
            )
    return out


def _home_models(models_dir: Path) -> dict[str, LocalModel]:
    out: dict[str, LocalModel] = {}
    if not models_dir.is_dir():
        return out
    for path in sorted(models_dir.rglob("*")):
        if path.is_file() and path.suffix == ".gguf" and not path.name.startswith("mmproj"):
            out[str(path.relative_to(models_dir))] = LocalModel(path.stem, path, "aris-home", [path.name])
        elif path.is_dir() and (path / "config.json").exists():
            out[str(path.relative_to(models_dir))] = LocalModel(
                path.name, path, "aris-home", sorted(p.name for p in path.iterdir())
            )
    return out


def local_models(models_dir: Path) -> list[LocalModel]:
    """Every model on this machine: the HF cache and ``$ARIS_HOME/models`` (GGUF files, HF folders)."""
    found = {**_hf_cached(), **_home_models(models_dir)}
    return list(found.values())


def _projector_rank(name: str) -> tuple[int, str]:
    """F16 first (the usual, lossless-enough choice), then BF16, F32, the rest."""
    tokens = set(re.split(r"[-_.]", Path(name).name.lower()))
    for rank, dtype in enumerate(("f16", "bf16", "f32")):
        if dtype in tokens:
            return rank, name
    return 3, name


def find_mmproj(model_path: Path) -> Path | None:
    """The projector that usually sits beside a GGUF model (``mmproj-*.gguf``), F16 preferred."""
    cands = sorted(model_path.parent.glob("mmproj*.gguf"), key=lambda p: _projector_rank(p.name))
    return cands[0] if cands else None


def not_found(model: str) -> ModelNotFoundError:
    info = REGISTRY.get(model)
    how = f"aris pull {model}" + (" --quant Q4_K_M" if info and info.quants else "")
    return ModelNotFoundError(
        f"model {model!r} is not on this machine and Aris never downloads silently. Get it with "
        f"`{how}` (needs network and, for gated weights, a Hugging Face token: HF_TOKEN or --token), "
        f"or pass a local folder / .gguf file with --model. {HAI_DEF_TERMS}"
    )


def pick_gguf_files(files: list[str], quant: str) -> tuple[str, str | None]:
    """From a GGUF repo's file list: the model file of ``quant`` and the best mmproj projector."""
    ggufs = [f for f in files if f.endswith(".gguf")]
    mmprojs = sorted(
        (f for f in ggufs if Path(f).name.lower().startswith("mmproj")),
        key=_projector_rank,
    )
    models = [
        f for f in ggufs if f not in mmprojs and fnmatch.fnmatch(Path(f).name.lower(), f"*{quant.lower()}*")
    ]
    if not models:
        have = sorted({Path(f).name for f in ggufs if f not in mmprojs})
        raise ArisError(f"no {quant} file in this repository; it has: {', '.join(have) or 'no GGUF files'}")
    return sorted(models, key=len)[0], (mmprojs[0] if mmprojs else None)


def pull(model: str, dest: Path, *, quant: str = "Q4_K_M", token: str | None = None) -> Path:
    """Download a release explicitly (resumable; progress bars from huggingface_hub)."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    token = token or os.environ.get("HF_TOKEN")
    target = dest / model.replace("/", "--")
    try:
        if model.endswith("-GGUF") or (REGISTRY.get(model) and REGISTRY[model].engine == "llamacpp"):
            files = HfApi(token=token).list_repo_files(model)
            model_file, mmproj = pick_gguf_files(files, quant)
            wanted = [model_file] + ([mmproj] if mmproj else [])
            for name in wanted:
                hf_hub_download(model, name, local_dir=target, token=token)
            return target / model_file
        return Path(snapshot_download(model, local_dir=target, token=token))
    except GatedRepoError as e:
        raise ArisError(
            f"{model} is gated: accept its terms on Hugging Face, then pass a token. {HAI_DEF_TERMS}"
        ) from e
    except RepositoryNotFoundError as e:
        raise ArisError(f"{model}: no such repository (or no access with this token)") from e
    except LocalEntryNotFoundError as e:
        raise ArisError(
            f"cannot download {model}: the Hugging Face hub is unreachable or HF_HUB_OFFLINE is set. "
            "Copy the model folder or GGUF files onto this machine and pass --model PATH instead."
        ) from e
    except OSError as e:
        raise ArisError(
            f"cannot download {model}: {e}. Check the network or pass a local --model PATH."
        ) from e
