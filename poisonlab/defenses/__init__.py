"""Defenses: detectors (flag inputs at inference; `base.py`, DETECTORS) and repairs (return a
cleaned model; `repair_base.py`, REPAIRS). How a defense is evaluated lives in
poisonlab.experiment (detection.py, repair.py)."""
