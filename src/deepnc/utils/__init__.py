"""What every layer uses and torch alone provides: argument checks with helpful errors,
the message that names a missing optional extra, progress bars (``tqdm`` imported on
first use), and the table of module paths that moved."""
