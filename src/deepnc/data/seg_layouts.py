"""Where the files of a segmentation set are: your own folder, ADE20K, Cityscapes, VOC.

Each finder returns a :class:`SegmentationLayout`: the train and evaluation file pairs,
the class names, the ignore index and, where the stored mask values are not the train
ids, the lookup table between them. Cityscapes and VOC are listed by torchvision's own
dataset classes; only their file lists are used (decoding is
:mod:`deepnc.data.seg_files`'s).

============  ==================================================================  =========
layout        files                                                               classes
============  ==================================================================  =========
segfolder     ``ROOT/{train,val}/{images,masks}/`` or ``ROOT/{images,masks}/``    yours
              (one tree, split by ``val_fraction`` with the seed)
ade20k        ``ROOT/ADEChallengeData2016/{images,annotations}/{training,        150
              validation}/``; label 0 ("other") ignored, 1..150 -> 0..149
cityscapes    ``ROOT/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` and       19
              ``ROOT/gtFine/.../*_gtFine_labelIds.png``; ids -> the 19 train ids
voc           ``ROOT/VOCdevkit/VOC2012/`` (``JPEGImages``, ``SegmentationClass``,  21
              ``ImageSets/Segmentation/{train,val}.txt``); 255 borders ignored
============  ==================================================================  =========
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from deepnc.data.image_files import IMAGE_SUFFIXES

__all__ = [
    "ADE20K_CLASSES",
    "VOC_CLASSES",
    "SegmentationLayout",
    "ade20k_layout",
    "cityscapes_layout",
    "segfolder_layout",
    "voc_layout",
]

Pairs = list[tuple[Path, Path]]

# ADE20K's SceneParsing150 categories, in label order (label k + 1 in the PNGs).
ADE20K_CLASSES = tuple(
    """wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|sidewalk|person|
    earth|door|table|mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|sea|
    mirror|rug|field|armchair|seat|fence|desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|
    box|column|signboard|chest of drawers|counter|sand|sink|skyscraper|fireplace|refrigerator|
    grandstand|path|stairs|runway|case|pool table|pillow|screen door|stairway|river|bridge|
    bookcase|blind|coffee table|toilet|flower|book|hill|bench|countertop|stove|palm|
    kitchen island|computer|swivel chair|boat|bar|arcade machine|hovel|bus|towel|light|truck|
    tower|chandelier|awning|streetlight|booth|television receiver|airplane|dirt track|apparel|
    pole|land|bannister|escalator|ottoman|bottle|buffet|poster|stage|van|ship|fountain|
    conveyer belt|canopy|washer|plaything|swimming pool|stool|barrel|basket|waterfall|tent|bag|
    minibike|cradle|oven|ball|food|step|tank|trade name|microwave|pot|animal|bicycle|lake|
    dishwasher|screen|blanket|sculpture|hood|sconce|vase|traffic light|tray|ashcan|fan|pier|
    crt screen|plate|monitor|bulletin board|shower|radiator|glass|clock|flag""".replace("\n", "")
    .replace("    ", "")
    .split("|")
)
VOC_CLASSES = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse "
    "motorbike person pottedplant sheep sofa train tvmonitor"
).split()


@dataclass
class SegmentationLayout:
    """The files and label facts of a segmentation set.

    Attributes:
        train, test: ``[(image, mask), ...]`` pairs, sorted.
        class_names: C names, in train-id order (``None``: the caller names them).
        ignore_index: the train id of unlabelled pixels.
        label_map: ``(V,)`` int64 lookup from stored mask values to train ids, or
            ``None`` when masks store train ids.
    """

    train: Pairs
    test: Pairs
    class_names: list[str] | None
    ignore_index: int = 255
    label_map: torch.Tensor | None = None


def segfolder_layout(
    root: str | Path, *, val_fraction: float = 0.2, seed: int = 0, ignore_index: int = 255
) -> SegmentationLayout:
    """Your own folder: ``train/`` and ``val/`` (or ``test/``) each with ``images/`` and
    ``masks/``, or one ``images/`` + ``masks/`` tree split ``val_fraction`` for
    evaluation, at random with ``seed``. A mask is the PNG of the image's stem.

    Raises:
        FileNotFoundError: neither layout is there; ValueError: images without masks,
        a split too small to leave both parts an image.
    """
    root = Path(root)
    evaluation = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and evaluation is not None:
        train, test = _folder_pairs(root / "train"), _folder_pairs(evaluation)
    elif (root / "images").is_dir() and (root / "masks").is_dir():
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        pairs = _folder_pairs(root)
        count = round(len(pairs) * val_fraction)
        if not 0 < count < len(pairs):
            raise ValueError(
                f"{root} holds {len(pairs)} image(s): too few to hold {val_fraction:.0%} out"
            )
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))
        held = set(order[:count].tolist())
        train = [pair for i, pair in enumerate(pairs) if i not in held]
        test = [pair for i, pair in enumerate(pairs) if i in held]
    else:
        raise FileNotFoundError(
            f"{root}: expected train/ and val/ (or test/), each with images/ and masks/, or "
            "one images/ + masks/ tree (split with the seed); a mask is <image stem>.png"
        )
    return SegmentationLayout(train, test, None, ignore_index)


def _folder_pairs(folder: Path) -> Pairs:
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise FileNotFoundError(f"{folder} needs images/ and masks/ folders")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images in {images_dir}")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() == ".png"}
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(
            f"{len(missing)} image(s) in {images_dir} have no mask in {masks_dir}: "
            f"{', '.join(missing[:10])}{more}"
        )
    return [(image, masks[image.stem]) for image in images]


def ade20k_layout(root: str | Path) -> SegmentationLayout:
    """ADE20K (SceneParsing, ``ADEChallengeData2016``): 150 classes, label 0 ignored."""
    base = Path(root)
    if (base / "ADEChallengeData2016").is_dir():
        base = base / "ADEChallengeData2016"
    splits = {}
    for split in ("training", "validation"):
        images_dir, masks_dir = base / "images" / split, base / "annotations" / split
        if not images_dir.is_dir() or not masks_dir.is_dir():
            raise FileNotFoundError(
                f"{root}: expected ADEChallengeData2016/images/{split}/*.jpg and "
                f"ADEChallengeData2016/annotations/{split}/*.png"
            )
        images = sorted(images_dir.glob("*.jpg"))
        splits[split] = _matched(images, lambda p, d=masks_dir: d / f"{p.stem}.png")
    label_map = torch.arange(-1, 255, dtype=torch.long)  # 0 -> ignored, k -> k - 1
    label_map[0] = 255
    return SegmentationLayout(
        splits["training"], splits["validation"], list(ADE20K_CLASSES), 255, label_map
    )


def cityscapes_layout(root: str | Path) -> SegmentationLayout:
    """Cityscapes, fine annotations: label ids mapped to the 19 train ids, the rest 255."""
    from torchvision.datasets import Cityscapes

    splits = {}
    for split in ("train", "val"):
        try:
            listed = Cityscapes(str(root), split=split, mode="fine", target_type="semantic")
        except RuntimeError as error:
            raise FileNotFoundError(
                f"{root}: expected leftImg8bit/{split}/<city>/*_leftImg8bit.png and "
                f"gtFine/{split}/<city>/*_gtFine_labelIds.png ({error})"
            ) from error
        pairs = [(Path(i), Path(t[0])) for i, t in zip(listed.images, listed.targets, strict=True)]
        splits[split] = sorted(pairs)
    label_map = torch.full((256,), 255, dtype=torch.long)
    names = {}
    for entry in Cityscapes.classes:
        if entry.id >= 0 and entry.train_id not in (255, -1):
            label_map[entry.id] = entry.train_id
            names[entry.train_id] = entry.name
    class_names = [names[i] for i in range(len(names))]
    return SegmentationLayout(splits["train"], splits["val"], class_names, 255, label_map)


def voc_layout(root: str | Path, *, year: str = "2012") -> SegmentationLayout:
    """Pascal VOC segmentation: 21 classes (background included), 255 borders ignored."""
    from torchvision.datasets import VOCSegmentation

    splits = {}
    for split in ("train", "val"):
        try:
            listed = VOCSegmentation(str(root), year=year, image_set=split)
        except RuntimeError as error:
            raise FileNotFoundError(
                f"{root}: expected VOCdevkit/VOC{year}/ with JPEGImages/, SegmentationClass/ "
                f"and ImageSets/Segmentation/{split}.txt ({error})"
            ) from error
        splits[split] = [
            (Path(i), Path(m)) for i, m in zip(listed.images, listed.masks, strict=True)
        ]
    return SegmentationLayout(splits["train"], splits["val"], list(VOC_CLASSES), 255)


def _matched(images: list[Path], mask_of) -> Pairs:
    """Pairs of images and their masks; missing masks are an error naming them."""
    if not images:
        raise ValueError("no images found")
    missing = [image.name for image in images if not mask_of(image).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no mask: {', '.join(missing[:10])}")
    return [(image, mask_of(image)) for image in images]
