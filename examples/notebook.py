"""A store to three figures and a table, as in a notebook (run: python examples/notebook.py STORE).

Nothing here writes into the store or a report folder: `losslines.compute` returns the results.
"""
import sys

import losslines
from losslines.analysis.figures import plot_per_line, save
from matplotlib.figure import Figure

store = losslines.open_store(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart.zarr")
res = losslines.compute(store)                        # every metric of the report, as Python objects
table = res.to_dataframe()                            # one row per line
print(store, res, table[["step", "s_opt", "update_step", "mae2"]].describe().round(4), sep="\n\n")

fig = Figure(figsize=(13, 3.6), layout="constrained")
left, middle, right = fig.subplots(1, 3)
losslines.plot_line(store, line=0, ax=left)          # the first line with its batch bands
plot_per_line(res, "s_opt", ax=middle)               # where the full-batch minimum lies
plot_per_line(res, "mae2", ax=right)                 # how parabolic the lines are
right.set_yscale("log")
save(fig, "notebook_figures.png")
print("wrote notebook_figures.png")
