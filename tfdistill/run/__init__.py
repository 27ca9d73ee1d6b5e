"""`tfdistill run`: data -> teacher -> students (scratch, distilled) -> [prune_channels] ->
[prune] -> [qat] -> export -> bench -> report.

`config` (`RunConfig`, config files, the fingerprint), `stages` (one class per stage),
`runner` (the loop), `state` (what the stages share), `training` (model, optimizer and fit
helpers) and `delivery` (export, bench, report). A run folder keeps a ledger
(`tfdistill.resume`): re-running the same config skips the finished stages, and an interrupted
training stage resumes from its last backed-up epoch.
"""

from tfdistill.run.config import RunConfig, fingerprinted, read_config
from tfdistill.run.runner import run
from tfdistill.run.stages import STAGES, Stage, stage_names, stage_work

__all__ = [
    "STAGES",
    "RunConfig",
    "Stage",
    "fingerprinted",
    "read_config",
    "run",
    "stage_names",
    "stage_work",
]
