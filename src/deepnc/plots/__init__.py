"""Pictures of runs, drawn with matplotlib (no display needed): training curves, confusion
matrices, coloured segmentation masks."""
