"""Defenses: detectors (flag inputs at inference; `base.py`, DETECTORS), repairs (return a
cleaned model; `repair_base.py`, REPAIRS) and training-set defenses (remove suspected poisoned
training examples; `sanitize_base.py`, SANITIZERS). How a defense is evaluated lives in
poisonlab.experiment (detection.py, repair.py, pipeline.py)."""
