"""The refinement step shared by MMPose estimators followed by PORT."""
from typing import List, Optional

import numpy as np
import torch
from mmengine.logging import print_log
from mmpose.registry import MODELS
from torch import Tensor

from .refiner_loading import load_refiner


def as_tensor(value, device) -> Tensor:
    """A float32 tensor on ``device`` from a numpy array or tensor."""
    return torch.as_tensor(np.asarray(value), dtype=torch.float32, device=device)


def keypoint_extent(keypoints: Tensor) -> Tensor:
    """Boxes (N, 4) xyxy spanning keypoints (N, K, 2)."""
    return torch.cat([keypoints.amin(1), keypoints.amax(1)], dim=1)


def build_refiner(refiner: Optional[dict], refiner_checkpoint: Optional[str],
                  refine_cfg: Optional[dict]):
    """Build the ``PORTRefiner`` of a refined estimator.

    Args:
        refiner (dict, optional): Its config; by default the one saved in
            ``refiner_checkpoint`` (architecture and test settings).
        refiner_checkpoint (str, optional): Its weights.
        refine_cfg (dict, optional): Overrides of its rule (any field of
            :class:`~mmport.models.refinement_rule.RefinementRule`, e.g.
            ``score_thr=0.5`` or ``rescore=None``) and ``chunk_size``.

    Returns:
        PORTRefiner: The refiner (train mode, as built).
    """
    if refiner_checkpoint:
        model = load_refiner(refiner_checkpoint, config=refiner).train()
    elif refiner is not None:
        model = MODELS.build(refiner)
    else:
        raise ValueError('a refined estimator needs refiner_checkpoint (or a refiner config)')
    overrides = dict(refine_cfg or {})
    if 'chunk_size' in overrides:
        model.chunk_size = overrides.pop('chunk_size')  # checked by the refiner
    if overrides:
        model.rule = model.rule.replace(**overrides)
    return model


class RefinedEstimatorMixin:
    """Adds a frozen-estimator ``PORTRefiner`` to an MMPose pose estimator.

    The estimator's own members (``backbone``, ``neck``, ``head``,
    ``data_preprocessor``, ``train_cfg``, ``test_cfg``) stay where MMPose
    puts them; the refiner is one more member, ``refiner``, whose state
    dict keys are ``refiner.*``. The estimator is always frozen (no
    gradients, BatchNorm in eval mode): training such a model trains the
    refiner alone; train the estimator with its plain MMPose config.
    """

    def _init_refinement(self, refiner: Optional[dict], refiner_checkpoint: Optional[str],
                         refine: bool, refine_cfg: Optional[dict]):
        for param in self.parameters():  # the estimator's, before the refiner exists
            param.requires_grad_(False)
        self.refiner = build_refiner(refiner, refiner_checkpoint, refine_cfg)
        self.refiner_checkpoint = refiner_checkpoint
        self.refine_enabled = refine
        self._register_load_state_dict_pre_hook(self._keep_refiner_pre_hook)

    def _keep_refiner_pre_hook(self, state_dict, prefix, *args, **kwargs):
        """A checkpoint without ``refiner.*`` keys (an MMPose model-zoo
        estimator) keeps the refiner as it is: its own keys are filled in
        so that nothing is reported missing."""
        key = prefix + 'refiner.'
        if any(k.startswith(key) for k in state_dict):
            return
        for name, value in self.refiner.state_dict().items():
            state_dict[key + name] = value
        print_log('the checkpoint holds no refiner weights: the refiner is kept as built '
                  f'(refiner_checkpoint={self.refiner_checkpoint})', logger='current')

    def init_weights(self):
        """Initialise the refiner unless it was loaded from its checkpoint.

        The frozen estimator is not initialised (no ImageNet weights are
        fetched for a backbone that never trains): its weights come from a
        checkpoint, ``load_from`` in a Runner (loaded after this is called)
        or ``init_model``'s."""
        if not self.refiner_checkpoint:
            self.refiner.init_weights()
        self._is_init = True

    def train(self, mode: bool = True):
        """Only the refiner ever goes into training mode."""
        super().train(False)
        self.refiner.train(mode)
        self.training = mode
        return self

    def refine_results(self, results: list) -> list:
        """Refine all predicted instances of a batch in one call and write
        ``keypoints`` (refined, (N, K, 2)), ``keypoints_init``,
        ``keypoint_scores_init`` and ``refined_mask`` (bool (N, K)) into each
        sample's ``pred_instances``. Keypoint scores keep the estimator's
        values; where the refiner's rule rescores (``rule.rescore``) and the
        instances carry ``bbox_scores`` (the instance score MMPose's COCO
        metric multiplies by the mean keypoint score), those are rescored
        and the estimator's kept as ``bbox_scores_init``."""
        device = next(self.refiner.parameters()).device
        kpts, scores, boxes, counts = self.gather_instances(results, device)
        rescore = (self.refine_enabled and self.refiner.rule.rescore is not None
                   and all('bbox_scores' in r.pred_instances for r in results))
        instance_scores = None
        if self.refine_enabled and len(kpts):
            if rescore:
                given = torch.cat([as_tensor(r.pred_instances.bbox_scores, device).reshape(-1)
                                   for r in results])
                refined, replaced, instance_scores = self.refiner.refine_and_rescore(
                    kpts, scores, boxes, given)
                instance_scores = instance_scores.cpu().numpy()
            else:
                refined, replaced = self.refiner.refine(kpts, scores, boxes)
            refined, replaced = refined.cpu().numpy(), replaced.cpu().numpy()
        else:
            refined, replaced = None, np.zeros(scores.shape, dtype=bool)
        start = 0
        for result, n in zip(results, counts):
            pred = result.pred_instances
            pred.keypoints_init = np.asarray(pred.keypoints)[..., :2].copy()
            pred.keypoint_scores_init = np.asarray(pred.keypoint_scores).copy()
            mask = replaced[start:start + n]
            if refined is not None:
                # only replaced joints change: the others keep the estimator's
                # values exactly (and its dtype)
                keypoints = np.array(pred.keypoints, copy=True)
                keypoints[..., :2][mask] = refined[start:start + n][mask]
                pred.keypoints = keypoints
            pred.refined_mask = mask
            if instance_scores is not None:
                init = np.asarray(pred.bbox_scores)
                pred.bbox_scores_init = init.copy()
                pred.bbox_scores = instance_scores[start:start + n].astype(init.dtype)
            start += n
        return results

    @staticmethod
    def gather_instances(results: list, device) -> tuple:
        """All predicted instances of a batch: keypoints (N, K, 2), scores
        (N, K), boxes (N, 4) xyxy, and the number of instances per sample.
        Instances without ``bboxes`` (some bottom-up heads predict none) are
        framed by the extent of their keypoints."""
        counts: List[int] = [len(r.pred_instances.keypoints) for r in results]
        kpts = [as_tensor(r.pred_instances.keypoints, device)[..., :2] for r in results]
        scores = [as_tensor(r.pred_instances.keypoint_scores, device) for r in results]
        boxes = [as_tensor(r.pred_instances.bboxes, device).reshape(-1, 4)
                 if 'bboxes' in r.pred_instances else keypoint_extent(k)
                 for r, k in zip(results, kpts)]
        return torch.cat(kpts), torch.cat(scores), torch.cat(boxes), counts
