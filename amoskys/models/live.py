"""The live ensemble: the BDH rule over the members that score one row at a time.

The detector scores each host's newest row as it arrives, so its ensemble leaves out the
sequence autoencoders (each of their scores needs the host's last 30 rows of every
feature, more state per host than the live path allows) and keeps the fast tier:
iforest and pca, plus xgboost when the training rows carry labels. Calibration, fusion
and rules are ``BdhEnsemble``'s; ``amoskys train`` fits it from the members it trained
in the same run, so it costs only the calibration.
"""

from __future__ import annotations

from amoskys.models.bdh import BdhEnsemble

FAST_MEMBERS = ("iforest", "pca", "xgboost")


class LiveEnsemble(BdhEnsemble):
    name = "live"
    default_members = ("iforest", "pca")
