"""What ``deepnc fit`` does: a DNC classifier from a frozen (pretrained) backbone and a
dataset or image folder, with no gradient step through the backbone.

The backbone embeds the training split once (evaluation transforms, batched, a progress
bar); the DNC head is fitted by balanced k-means in each class (k-means++ seeds, then
Sinkhorn rounds at momentum 0: :meth:`DNCHead.fit <deepnc.DNCHead.fit>`); the test split
(or the validation split: ``evaluate_on: val``) is scored. A head with a projection
(``head_options: {projection: P}``) first learns it, with its LayerNorm, on the cached
embeddings (:func:`~deepnc.nn.projection.learn_projection`): the learnt metric a frozen
backbone lacks; the backbone stays frozen.

The run folder is an ordinary one (``config.yaml``, ``checkpoint.safetensors``,
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

from deepnc.engine.build import build_data, build_model, count_parameters, scored_split
from deepnc.engine.checkpoint import CHECKPOINT_NAME, Checkpoint
from deepnc.engine.config import TrainConfig, save_config
from deepnc.engine.evaluation import TEST_METRICS, evaluate_split
from deepnc.engine.runtime import seed_everything, select_device
from deepnc.explain.embedding_cache import save_embeddings
from deepnc.incremental import head_inputs
from deepnc.nn.hooks import single_dnc_head
from deepnc.nn.projection import learn_projection
from deepnc.utils.progress import progress_bar

__all__ = ["ProjectionOptions", "fit_run"]

log = logging.getLogger("deepnc")


@dataclasses.dataclass(frozen=True)
class ProjectionOptions:
    """How a head's projection is learnt (:func:`~deepnc.nn.projection.learn_projection`)."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 256
    momentum: float = 0.9


def fit_run(
    config: TrainConfig,
    *,
    iterations: int = 10,
    projection: ProjectionOptions = ProjectionOptions(),
) -> dict[str, Any]:
    """Fit ``config``'s DNC head on its frozen backbone; return the run's summary.

    ``config.pretrained`` decides the backbone's weights (a random backbone is allowed,
    and says little). Augmentation is off: every image is embedded once as it is.
    ``projection`` applies when the head has one (``head_options.projection``).

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
    with torch.no_grad():
        inputs, labels = head_inputs(model, batches, device)
    embed_seconds = time.perf_counter() - start
    inputs, labels = inputs.to(device), labels.to(device)
    learnt = {}
    if config.head_options.get("projection"):
        losses = learn_projection(
            head,
            inputs,
            labels,
            **dataclasses.asdict(projection),
            iterations=iterations,
            seed=config.seed,
            progress=lambda epochs: progress_bar(
                epochs, "learning the projection", config.progress, leave=True
            ),
        )
        learnt = {"projection": {**dataclasses.asdict(projection), "losses": losses}}
    else:
        with torch.no_grad():
            head.fit(inputs, labels, iterations=iterations)
    fit_seconds = time.perf_counter() - start
    log.info(
        "fitted on %d images in %.1f s (%.1f s embedding)", len(labels), fit_seconds, embed_seconds
    )
    model.eval()
    split = scored_split(config, data)
    scored = DataLoader(split, config.eval_batch_size, num_workers=config.workers)
    result = evaluate_split(model, scored, data, device, progress=config.progress).summary()
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    checkpoint = Checkpoint(
        model=dict(model.state_dict()),
        config=config.to_dict(),
        dataset=data.describe(),
        extra={"fitted": {"iterations": iterations, "images": len(labels), **learnt}},
    )
    checkpoint.save(out / CHECKPOINT_NAME)
    with torch.no_grad():
        save_embeddings(out, head.embed(inputs).cpu(), labels.cpu(), model)
    summary = {
        "task": data.task,
        "model": config.model,
        "head": config.head,
        "dataset": config.dataset,
        "seed": config.seed,
        "epochs": 0,
        "evaluated_on": config.evaluate_on,
        **{f"{config.evaluate_on}_{name}": result[name] for name in TEST_METRICS[data.task]},
        "embed_seconds": embed_seconds,
        "fit_seconds": fit_seconds,
        "parameters": count_parameters(model),
        "unreadable_images": data.unreadable,
        "train_size": len(data.train),
        "test_size": len(data.test),
        "config": config.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
