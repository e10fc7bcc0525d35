"""What several of parpy's features share, and nothing else: the process start
method (``processes``), fork safety (``fork``), progress bars (``progress``),
Dask clients (``dask``), how reports render (``render``) and the one
place that decides which call runs natively (``dispatch``). Internal: no
public names, and it imports no feature."""
