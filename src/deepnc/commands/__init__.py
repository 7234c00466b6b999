"""What each ``deepnc`` command computes, one module per command, as functions that return
data and write files; :mod:`deepnc.cli` only parses arguments and prints."""
