"""In-context learning on causal LMs and the attacks on it (ICLAttack).

template, verbalizer, demonstrations: writing the prompt; scoring: label words from the next-token
distribution over a cached demonstration prefix; calibration: contextual calibration; attack_base:
the ICL_ATTACKS registry (attacks live in poisonlab/attacks/icl_*.py); evaluate: the metrics of
one attack; run, study, report, cli: configs, run folders, the study's table and plot."""
