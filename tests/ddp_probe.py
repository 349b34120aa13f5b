"""Run `basicsr train` under torchrun and record, per rank, what each training step saw and made.

Used by test_distributed.py: ``torchrun --nproc_per_node=2 tests/ddp_probe.py OUT_DIR -opt ... --launcher
pytorch``. Every step appends ``{"iter", "keys", "weights"}`` to ``OUT_DIR/rank<r>.jsonl``: the image
keys of the batch the rank trained on and a checksum of its network weights after the step.
"""

import hashlib
import json
import os
import sys

import serpent_arch  # noqa: F401  (registers Serpent and fixes BasicSR before it is imported)
from serpent_arch import cli
from serpent_arch.models.serpent_model import SerpentModel


def _checksum(net) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def main() -> int:
    out_dir, argv = sys.argv[1], sys.argv[2:]
    record_path = os.path.join(out_dir, f"rank{os.environ['RANK']}.jsonl")
    feed_data, optimize = SerpentModel.feed_data, SerpentModel.optimize_parameters

    def recording_feed_data(self, data):
        self._probe_keys = list(data.get("gt_path", []))
        feed_data(self, data)

    def recording_optimize(self, current_iter):
        optimize(self, current_iter)
        record = {"iter": current_iter, "keys": self._probe_keys, "weights": _checksum(self.get_bare_model(self.net_g))}
        with open(record_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    SerpentModel.feed_data, SerpentModel.optimize_parameters = recording_feed_data, recording_optimize
    return cli.main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main())
