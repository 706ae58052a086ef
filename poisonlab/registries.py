"""Every component registry, in the order `poisonlab list` shows them. Each registry fills itself
from its package on first lookup."""

from poisonlab.attacks.base import DATA_ATTACKS
from poisonlab.attacks.icl_base import ICL_ATTACKS
from poisonlab.attacks.instruction_base import INSTRUCTION_ATTACKS
from poisonlab.attacks.weight_base import WEIGHT_ATTACKS
from poisonlab.defenses.base import DETECTORS
from poisonlab.defenses.generative_base import GENERATIVE_DEFENSES
from poisonlab.defenses.repair_base import REPAIRS
from poisonlab.defenses.sanitize_base import SANITIZERS
from poisonlab.registry import Registry
from poisonlab.tuning.base import TUNING_STRATEGIES

REGISTRIES: tuple[Registry, ...] = (DATA_ATTACKS, WEIGHT_ATTACKS, ICL_ATTACKS, INSTRUCTION_ATTACKS,
                                    TUNING_STRATEGIES, DETECTORS, REPAIRS, SANITIZERS,
                                    GENERATIVE_DEFENSES)
