"""coefgen: compiler of coefficient tables for unbiased answer-level rewards.

Pipeline: rewards → solvers (exact, minimax, aqp, baselines) → certify → table →
writers / runtime → cli. ``import coefgen`` stays light: the runtime needs numpy only.
"""

__version__ = "0.3.2"
