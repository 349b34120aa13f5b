"""SerpentModel: BasicSR's SRModel with what restoration training on Serpent needs.

Differences from ``SRModel`` (everything else, losses, EMA, schedulers, checkpoints, is
BasicSR's):
- ``train.optim_g.type`` may name any ``torch.optim`` optimizer (AdamW, SGD, ...), not just Adam; Adam
  and AdamW run fused unless the options say otherwise (:mod:`serpent_arch.optimizers`);
- validation and testing run on whole images of any size, or tiled when ``val.tile`` is set
  (``val.tile_overlap``, default 32 input pixels); ``val.self_ensemble: true`` averages the
  8 flips/rotations of each input (the "+" results of papers);
- every validation also reports the input baseline (the LQ image bicubically resized to the
  output size: bicubic upsampling for SR, the degraded image itself for restoration) with the
  same metrics, so the gain of the network is visible (``val.report_baseline``, default true);
- training states also hold the data position and random states (``data_position``, see
  ``serpent_arch.training``), so ``--auto_resume`` continues exactly where the run stopped;
- mixed precision: ``train.amp`` / ``val.amp``: ``bf16``, ``fp16`` or ``false`` (default), see
  :mod:`serpent_arch.amp`; fp16 training scales the loss with ``torch.amp.GradScaler``, whose
  state is part of the training state;
- the first log lines say which selective-scan backend runs on the model's device, and why;
- the EMA of the weights (``train.ema_decay``) warms up: update ``n`` (the iteration) uses the
  decay ``min(ema_decay, (1 + n) / (10 + n))`` (``train.ema_warmup``, default true; false gives
  BasicSR's constant decay). Without it a short run's EMA still holds the random initialisation
  and the first iterations (0.999 over 3,000 iterations keeps e^-3 = 5% of the initial weights);
  with it the EMA averages roughly the last tenth of a short run and is the constant-decay EMA
  after ~9,000 iterations. The decay depends only on the iteration, which the training state
  holds, so a resumed run continues with the same decays;
- in training, a set is validated once per weights: BasicSR's loop validates at the last iteration
  when it is a multiple of ``val.val_freq`` and again after the loop, on the same weights; the
  second is left out, and a validation after the loop is recorded at the last iteration trained
  (the loop's counter has moved past ``train.total_iter`` by then);
- ``val.max_images: N`` validates on the first N images of each set only (``basicsr train --trial``
  sets it, so that a trial of a file with a 1,000-image validation set stays short);
- metrics are written as JSON: ``experiments/NAME/val_metrics.jsonl`` during training,
  ``results/NAME/metrics.json`` when testing, one record per dataset with what a results table
  needs (network options, parameter count, scale, image count, metric options, self-ensemble).
"""

from __future__ import annotations

import itertools
import json
import os
from collections import OrderedDict
from os import path as osp

import torch
import torch.nn.functional as F
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY

from serpent_arch import amp, host_memory, nonfinite
from serpent_arch.checkpoints import atomic_save
from serpent_arch.forward_passes import self_ensemble_forward, tiled_forward
from serpent_arch.ops.backend_report import scan_log_line
from serpent_arch.optimizers import build_optimizer


def ema_decay_at(decay: float, iteration: int) -> float:
    """The decay of EMA update ``iteration`` (1, 2, ...): ``min(decay, (1 + n) / (10 + n))``.

    The warm-up of TensorFlow's ExponentialMovingAverage(num_updates=n): early updates forget
    fast, so the average never holds much of the random initialisation.
    """
    return min(float(decay), (1.0 + iteration) / (10.0 + iteration))


def _padded_to(net, window, scale: int):
    """``net``, or for a windowed network (``network_g.window_size``: SwinIR and its kind, which
    only take multiples of the window) a function that reflect-pads the input up to one and crops
    the output back, as BasicSR's SwinIRModel does when testing. (N, C, H, W) -> (N, C, sH, sW)."""
    if not isinstance(window, int) or window <= 1:
        return net

    def forward(x):
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % window, (-w) % window
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if pad_h < h and pad_w < w else "replicate")
        return net(x)[..., : h * scale, : w * scale]

    return forward


class _FirstImages:
    """The first ``count`` items of a validation loader (batches of one image), for ``val.max_images``."""

    def __init__(self, loader, count: int):
        self.loader, self.dataset, self.count = loader, loader.dataset, min(count, len(loader))

    def __len__(self):
        return self.count

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.count)


@MODEL_REGISTRY.register()
class SerpentModel(SRModel):
    """Single-image restoration / super-resolution model for Serpent (and any BasicSR network)."""

    def __init__(self, opt):
        is_train = bool(opt.get("is_train"))
        self.amp_dtype = amp.dtype_of((opt.get("train") or {}).get("amp", False)) if is_train else None
        self.val_amp_dtype = amp.dtype_of((opt.get("val") or {}).get("amp", False))
        super().__init__(opt)
        for key, dtype in (("train.amp", self.amp_dtype), ("val.amp", self.val_amp_dtype)):
            problem = amp.unsupported(self.device, dtype)
            if problem:
                raise ValueError(f"{key}: {amp.name_of(dtype)} on {self.device}: {problem}")
        # only fp16 needs loss scaling; a disabled scaler passes everything through
        self.scaler = amp.grad_scaler(self.device, enabled=self.amp_dtype == torch.float16)
        logger = get_root_logger()
        logger.info(scan_log_line(self.get_bare_model(self.net_g), self.device))
        if self.device.type == "cpu":
            logger.info(host_memory.keep_freed_memory())
        if self.amp_dtype or self.val_amp_dtype:
            parts = [f"train {amp.name_of(self.amp_dtype)}"] if is_train else []
            parts.append(f"validation {amp.name_of(self.val_amp_dtype)}")
            scaling = " (loss scaling)" if self.scaler.is_enabled() else ""
            logger.info(f"mixed precision: {', '.join(parts)}{scaling}")

    def optimize_parameters(self, current_iter):
        self._ema_iter = current_iter  # read by model_ema, called after the step, and by validation
        if self.amp_dtype is None:
            return super().optimize_parameters(current_iter)
        # SRModel's step, with the forward and the losses under autocast and, for fp16, the loss scaled
        self.optimizer_g.zero_grad()
        with amp.autocast(self.device, self.amp_dtype):
            self.output = self.net_g(self.lq)
            loss_dict = OrderedDict()
            if self.cri_pix:
                loss_dict["l_pix"] = self.cri_pix(self.output, self.gt)
            if self.cri_perceptual:
                loss_dict["l_percep"], loss_dict["l_style"] = self.cri_perceptual(self.output, self.gt)
            loss_dict = OrderedDict((k, v.float()) for k, v in loss_dict.items() if v is not None)
            l_total = sum(loss_dict.values())
        self.scaler.scale(l_total).backward()
        nonfinite.scaled_step(self.scaler, self.optimizer_g, l_total, current_iter)
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        self._ema_iter = resume_state["iter"]  # the weights loaded are those of this iteration
        if resume_state.get("amp_scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(resume_state["amp_scaler"])

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        return build_optimizer(optim_type, params, lr, **kwargs)

    def model_ema(self, decay=0.999):
        """BasicSR's EMA update, with the warm-up of :func:`ema_decay_at` unless ``train.ema_warmup: false``."""
        iteration = getattr(self, "_ema_iter", None)
        warmup = (self.opt.get("train") or {}).get("ema_warmup", True)
        if decay > 0 and warmup and iteration is not None:
            decay = ema_decay_at(decay, iteration)
        super().model_ema(decay=decay)

    def save_training_state(self, epoch, current_iter):
        """BasicSR's training state (epoch, iter, optimizers, schedulers) plus the data position.

        Not master-only like BasicSR's: gathering every rank's random state is collective.
        """
        run = getattr(self, "training_run", None)  # set by basicsr train (serpent_arch.training)
        position = run.data_position() if run is not None and current_iter != -1 else None
        if current_iter == -1 or self.opt.get("rank", 0) != 0:
            return
        state = {
            "epoch": epoch,
            "iter": current_iter,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "data_position": position,
            "amp_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
        }
        atomic_save(state, osp.join(self.opt["path"]["training_states"], f"{current_iter}.state"))

    @property
    def _scale(self) -> int:
        return int(self.opt.get("scale", 1))

    def test(self):
        net = self.net_g_ema if hasattr(self, "net_g_ema") else self.net_g
        was_training = net.training
        net.eval()
        val_opt = self.opt.get("val") or {}

        window = (self.opt.get("network_g") or {}).get("window_size")
        padded = _padded_to(net, window, self._scale)

        def net_forward(x):
            if self.val_amp_dtype is None:
                return padded(x)
            # float32 out, so that tile blending and the ensemble mean never accumulate in half precision
            with amp.autocast(self.device, self.val_amp_dtype):
                return padded(x).float()

        def forward(x):
            tile, overlap = val_opt.get("tile"), val_opt.get("tile_overlap", 32)
            return tiled_forward(net_forward, x, self._scale, tile=tile, overlap=overlap)

        self.output = self_ensemble_forward(forward, self.lq) if val_opt.get("self_ensemble") else forward(self.lq)
        if was_training:
            net.train()

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        """BasicSR's validation; in training at most once per set and weights (see the module docstring)."""
        trained = getattr(self, "_ema_iter", None)
        if self.opt.get("is_train") and trained is not None:
            current_iter = trained
            done = self.__dict__.setdefault("_validated", set())
            key = (dataloader.dataset.opt["name"], trained)
            if key in done:
                get_root_logger().info(f"Validation {key[0]}: already done at iteration {trained}.")
                return
            done.add(key)
        super().validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        val_opt = self.opt["val"]
        if val_opt.get("max_images"):
            dataloader = _FirstImages(dataloader, int(val_opt["max_images"]))
        dataset_name = dataloader.dataset.opt["name"]
        if not hasattr(self, "_num_val_images"):
            self._num_val_images = {}
        self._num_val_images[dataset_name] = len(dataloader)  # for the metrics record (batches of one image)
        if val_opt.get("metrics") and val_opt.get("report_baseline", True):
            if not hasattr(self, "baseline_results"):
                self.baseline_results = {}
            if dataset_name not in self.baseline_results:  # the baseline never changes: compute once
                self.baseline_results[dataset_name] = self._baseline_metrics(dataloader)
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def _baseline_metrics(self, dataloader) -> dict[str, float]:
        """Metrics of the LQ input bicubically resized to the GT size, averaged over the set."""
        totals, count = {}, 0
        for data in dataloader:
            if "gt" not in data:
                return {}
            lq, gt = data["lq"], data["gt"]
            if lq.shape[-2:] != gt.shape[-2:]:
                lq = F.interpolate(lq, size=gt.shape[-2:], mode="bicubic", align_corners=False)
            metric_data = dict(img=tensor2img([lq.clamp(0, 1)]), img2=tensor2img([gt]))
            for name, metric_opt in self.opt["val"]["metrics"].items():
                totals[name] = totals.get(name, 0.0) + float(calculate_metric(metric_data, metric_opt))
            count += 1
        return {name: total / count for name, total in totals.items()} if count else {}

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        super()._log_validation_metric_values(current_iter, dataset_name, tb_logger)
        baseline = getattr(self, "baseline_results", {}).get(dataset_name, {})
        if baseline:
            parts = [
                f"{name}: {value:.4f} (network {self.metric_results[name] - value:+.4f})"
                for name, value in baseline.items()
            ]
            get_root_logger().info(f"Baseline (bicubic input) {dataset_name}\n\t # " + "\n\t # ".join(parts))
            if tb_logger:
                for name, value in baseline.items():
                    tb_logger.add_scalar(f"metrics/{dataset_name}/{name}_baseline", value, current_iter)
        self._write_metrics(current_iter, dataset_name, baseline)

    @master_only
    def _write_metrics(self, current_iter, dataset_name, baseline):
        val_opt = self.opt["val"]
        net = self.get_bare_model(self.net_g)
        record = {
            "name": self.opt["name"],
            "dataset": dataset_name,
            "iter": current_iter,
            "network": self.opt["network_g"].get("type"),
            "network_g": dict(self.opt["network_g"]),
            "params": sum(p.numel() for p in net.parameters()),
            "scale": self._scale,
            "num_images": self._num_val_images.get(dataset_name),
            "self_ensemble": bool(val_opt.get("self_ensemble", False)),
            "metric_opts": {name: dict(m) for name, m in (val_opt.get("metrics") or {}).items()},
            "metrics": dict(self.metric_results),
            "baseline": baseline,
        }
        if self.opt["is_train"]:
            path = osp.join(self.opt["path"]["experiments_root"], "val_metrics.jsonl")
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
            return
        path = osp.join(self.opt["path"]["results_root"], "metrics.json")
        results = {}
        if osp.isfile(path):
            with open(path) as f:
                results = json.load(f)
        results[dataset_name] = record
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, path)
