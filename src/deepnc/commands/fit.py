"""What ``deepnc fit`` does: a DNC classifier from a frozen (pretrained) backbone and a
dataset or image folder, with no gradient step.

The backbone embeds the training split once (evaluation transforms, batched, a progress
bar); the DNC head is fitted by balanced k-means in each class (k-means++ seeds, then
Sinkhorn rounds at momentum 0: :meth:`DNCHead.fit <deepnc.DNCHead.fit>`); the test split
is scored. The run folder is an ordinary one (``config.yaml``, ``checkpoint.safetensors``,
``summary.json``) that ``eval``, ``snap``, ``explain``, ``predict``, ``add-classes`` and
``export`` accept, plus ``train_embeddings.safetensors``: the training embeddings, which
``snap`` and ``explain`` read instead of embedding the training set again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from deepnc.engine.build import build_data, build_model, count_parameters
from deepnc.engine.checkpoint import CHECKPOINT_NAME, Checkpoint
from deepnc.engine.config import TrainConfig, save_config
from deepnc.engine.evaluation import TEST_METRICS, evaluate_split
from deepnc.engine.runtime import seed_everything, select_device
from deepnc.explain.embedding_cache import save_embeddings
from deepnc.incremental import head_inputs
from deepnc.nn.hooks import single_dnc_head
from deepnc.utils.progress import progress_bar

__all__ = ["fit_run"]

log = logging.getLogger("deepnc")


@torch.no_grad()
def fit_run(config: TrainConfig, *, iterations: int = 10) -> dict[str, Any]:
    """Fit ``config``'s DNC head on its frozen backbone; return the run's summary.

    ``config.pretrained`` decides the backbone's weights (a random backbone is allowed,
    and says little). Augmentation is off: every image is embedded once as it is.

    Raises:
        FileExistsError: the run folder already holds a checkpoint.
        ValueError: a softmax head, a segmentation task, or a bad config.
    """
    config = dataclasses.replace(config, augment=False).validate()
    if config.head != "dnc" or config.task != "classification":
        raise ValueError(
            "deepnc fit fits a DNC head of a classifier: head dnc, task classification"
        )
    out = Path(config.out_dir)
    if (out / CHECKPOINT_NAME).exists():
        raise FileExistsError(f"{out} already holds a run; choose another out_dir")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = select_device(config.device)
    data = build_data(config)
    seed_everything(config.seed)
    model = build_model(config, data.describe()).to(device).eval()
    head = single_dnc_head(model, "deepnc fit needs")
    start = time.perf_counter()
    loader = DataLoader(data.train, config.eval_batch_size, num_workers=config.workers)
    batches = progress_bar(loader, "embedding", config.progress, leave=True)
    inputs, labels = head_inputs(model, batches, device)
    embed_seconds = time.perf_counter() - start
    head.fit(inputs.to(device), labels.to(device), iterations=iterations)
    fit_seconds = time.perf_counter() - start
    log.info(
        "fitted on %d images in %.1f s (%.1f s embedding)", len(labels), fit_seconds, embed_seconds
    )
    test = DataLoader(data.test, config.eval_batch_size, num_workers=config.workers)
    result = evaluate_split(model, test, data, device, progress=config.progress).summary()
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    checkpoint = Checkpoint(
        model=dict(model.state_dict()),
        config=config.to_dict(),
        dataset=data.describe(),
        extra={"fitted": {"iterations": iterations, "images": len(labels)}},
    )
    checkpoint.save(out / CHECKPOINT_NAME)
    save_embeddings(out, head.embed(inputs.to(device)).cpu(), labels, model)
    summary = {
        "task": data.task,
        "model": config.model,
        "head": config.head,
        "dataset": config.dataset,
        "seed": config.seed,
        "epochs": 0,
        "evaluated_on": "test",
        **{f"test_{name}": result[name] for name in TEST_METRICS[data.task]},
        "embed_seconds": embed_seconds,
        "fit_seconds": fit_seconds,
        "parameters": count_parameters(model),
        "train_size": len(data.train),
        "test_size": len(data.test),
        "config": config.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
