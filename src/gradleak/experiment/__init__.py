"""One scenario end to end, and everything a run needs around it.

* :mod:`~gradleak.experiment.scenario` — :class:`Scenario` (what to run) and ``build_attack``;
* :mod:`~gradleak.experiment.run` — :func:`run_scenario` → a typed ``RunResult``;
* :mod:`~gradleak.experiment.model_state` — untrained, trained (cached) or checkpoint weights;
* :mod:`~gradleak.experiment.runfolder` — run folders on disk;
* :mod:`~gradleak.experiment.update_io`, :mod:`~gradleak.experiment.update_file` — saved updates.
"""

from gradleak.experiment.run import run_scenario
from gradleak.experiment.scenario import Scenario, build_attack, scenario_from_dict
from gradleak.experiment.update_file import attack_update_file

__all__ = ["Scenario", "attack_update_file", "build_attack", "run_scenario", "scenario_from_dict"]
