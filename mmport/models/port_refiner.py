"""PORT as a trainable MMPose model working on keypoints alone."""
from types import MappingProxyType
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from mmpose.datasets.datasets.utils import parse_pose_metainfo
from mmpose.registry import MODELS
from torch import Tensor

from mmport.structures.instance_batch import check_instance_batch
from mmport.structures.normalization import frame_from_bboxes, from_frame, to_frame, valid_bboxes
from .do_no_harm import (QUALITY_KINDS, expected_gain_gate, expected_quality,
                         joint_tolerances, joints_outside_boxes, outside_box_margins,
                         quality_loss)
from .instance_rescoring import (calibrated_similarity, expected_instance_similarity,
                                 rescored_instance_scores)
from .refinement_rule import LEGACY_KEYS, RefinementRule, RuleError

LOSS_TYPES = ('l1', 'euclidean', 'welsch')


def joint_errors(pred: Tensor, target: Tensor, loss_type: str, scale: float = 0.05) -> Tensor:
    """Per-joint training error (B, K) of coordinates (B, K, 2): the L1
    distance, the euclidean one (what EPE measures; its gradient at zero is
    taken as zero), or the Welsch loss ``scale * (1 - exp(-d^2 / (2 scale^2)))``
    of the euclidean distance ``d``: it saturates beyond about ``2 * scale``,
    so a joint already far off (a miss under a PCK or OKS tolerance of that
    order) pulls the model no more than one just outside; it trains for a
    tolerance metric rather than for the mean distance."""
    if loss_type == 'l1':
        return (pred - target).abs().sum(-1)
    if loss_type == 'welsch':
        sq = (pred - target).pow(2).sum(-1)
        return scale * (1 - torch.exp(-sq / (2 * scale ** 2)))
    return torch.linalg.vector_norm(pred - target, dim=-1)


def resolve_metainfo(metainfo: Optional[dict]) -> dict:
    """Parse an MMPose metainfo spec (``dict(from_file=...)`` or a parsed one)."""
    if metainfo is None:
        return {}
    if 'skeleton_links' in metainfo or 'num_keypoints' in metainfo:
        return dict(metainfo)
    return parse_pose_metainfo(dict(metainfo))


@MODELS.register_module()
class PORTRefiner(BaseModel):
    """Refines low-confidence joints of top-down pose predictions with PORT.

    Works on keypoints alone: ``inputs`` are the poses to refine, (B, K, 3)
    rows of (x, y, score) in pixels (as packed by ``PackRefinerInputs``),
    and each data sample's ``gt_instances.bboxes`` gives the instance frame.

    At test time its :class:`~mmport.models.refinement_rule.RefinementRule`
    (``refiner.rule``, built from ``test_cfg.rule``) decides which joints
    are candidates, which of them move (the do-no-harm gate), how, and
    whether instance scores are rescored. An instance is passed through
    unchanged when its box is degenerate, its input holds NaN/inf, it has
    no candidate joint, or fewer than ``rule.min_confident`` joints are not
    candidates.

    Args:
        network (dict): Config of the network, normally
            ``PoseRelationTransformer``; ``num_keypoints`` and
            ``skeleton_links`` default to the metainfo's.
        metainfo (dict, optional): MMPose dataset metainfo, e.g.
            ``dict(from_file='configs/_base_/datasets/panoptic_hand2d.py')``.
        rotate_axis (tuple[int, int], optional): Canonicalise rotation so that
            joint a -> joint b points up (see ``mmport.structures.normalization``).
        quality_kind (str): What the network's error head estimates, where
            it has one (``predict_errors``): ``'log_distance'`` (default) or
            ``'keypoint_similarity'`` (needs the metainfo's OKS sigmas); see
            :mod:`mmport.models.do_no_harm`.
        train_cfg (dict, optional): ``loss_type`` (``'l1'``, the default,
            ``'euclidean'``: the per-joint distance that EPE measures, or
            ``'welsch'``: a robust loss for PCK / OKS metrics, with
            ``loss_scale`` in frame units, default 0.05; see
            :func:`joint_errors`),
            ``visible_loss_weight`` (weight of the loss on unmasked joints
            relative to masked ones; default 0.1) and ``error_loss_weight``
            (weight of :func:`mmport.models.do_no_harm.quality_loss` where
            the network estimates errors; default 0.05).
        test_cfg (dict, optional): ``rule``, the test-time rule as a
            :class:`~mmport.models.refinement_rule.RefinementRule` config
            dict (default: ``RefinementRule()``), and ``chunk_size``
            (poses per network call in :meth:`refine`; default 128). The
            loose keys of older refiners (``score_thr``, ``gate_margin``,
            ...) are converted by ``RefinementRule.from_legacy_test_cfg``.
        data_preprocessor (dict, optional): mmengine data preprocessor.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, network: dict, metainfo: Optional[dict] = None,
                 rotate_axis: Optional[Sequence[int]] = None,
                 quality_kind: str = 'log_distance',
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.metainfo = resolve_metainfo(metainfo)
        network = dict(network)
        if 'num_keypoints' not in network:
            network['num_keypoints'] = self.metainfo['num_keypoints']
        if 'skeleton_links' not in network:
            network['skeleton_links'] = self.metainfo['skeleton_links']
        self.network = MODELS.build(network)
        self.num_keypoints = self.network.num_keypoints
        self.rotate_axis = tuple(rotate_axis) if rotate_axis is not None else None
        if quality_kind not in QUALITY_KINDS:
            raise ValueError(f'quality_kind must be one of {QUALITY_KINDS}, got {quality_kind!r}')
        self.quality_kind = quality_kind
        tolerances = None
        if quality_kind == 'keypoint_similarity':
            sigmas = self.metainfo.get('sigmas')
            if sigmas is None or len(sigmas) != self.num_keypoints:
                raise ValueError("quality_kind='keypoint_similarity' needs the metainfo's "
                                 f'OKS sigmas for {self.num_keypoints} keypoints')
            tolerances = joint_tolerances(sigmas)
        self.register_buffer('joint_tolerances', tolerances, persistent=False)
        self.train_cfg = {'visible_loss_weight': 0.1, 'loss_type': 'l1', **(train_cfg or {})}
        if self.train_cfg['loss_type'] not in LOSS_TYPES:
            raise ValueError(f'train_cfg.loss_type must be one of {LOSS_TYPES}, got '
                             f"{self.train_cfg['loss_type']!r}")
        self.train_cfg.setdefault('error_loss_weight', 0.05)
        self.train_cfg.setdefault('loss_scale', 0.05)
        if not self.train_cfg['loss_scale'] > 0:
            raise ValueError('train_cfg.loss_scale must be > 0, got '
                             f"{self.train_cfg['loss_scale']!r}")
        flip_indices = self.metainfo.get('flip_indices')
        self.flip_indices = list(flip_indices) if flip_indices is not None else None
        test_cfg = dict(test_cfg or {})
        self.chunk_size = test_cfg.pop('chunk_size', 128)
        legacy = {k: test_cfg.pop(k) for k in LEGACY_KEYS if k in test_cfg}
        rule = test_cfg.pop('rule', None)
        if test_cfg:
            raise ValueError(f'test_cfg: unknown key(s) {sorted(test_cfg)}; expected rule and '
                             'chunk_size')
        if rule is not None and legacy:
            raise ValueError(f'test_cfg: give the rule, or the legacy keys {sorted(legacy)}, '
                             'not both')
        self.rule = (RefinementRule.build(rule) if rule is not None or not legacy else
                     RefinementRule.from_legacy_test_cfg(
                         legacy, getattr(self.network, 'use_scores', True), quality_kind))

    @property
    def rule(self) -> RefinementRule:
        """The test-time rule (assign a new one to change it)."""
        return self._rule

    @rule.setter
    def rule(self, rule: Union[RefinementRule, dict]) -> None:
        rule = RefinementRule.build(rule)
        if rule.gate is not None:
            if not getattr(self.network, 'predict_errors', False):
                raise RuleError('refinement rule: a gate needs a network with '
                                'predict_errors=True')
            rule.gate.margins(self.num_keypoints)  # one margin per joint class, if a list
        if rule.rescore is not None and not self.can_rescore:
            raise RuleError('refinement rule: rescore needs a network with predict_errors=True '
                            "and quality_kind='keypoint_similarity'")
        if rule.flip_test:
            self._check_flip_indices()
        self._rule = rule

    @property
    def chunk_size(self) -> int:
        """Poses per network call in :meth:`refine_and_rescore`."""
        return self._chunk_size

    @chunk_size.setter
    def chunk_size(self, chunk: int) -> None:
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f'chunk_size must be a positive int, got {chunk!r}')
        self._chunk_size = chunk

    @property
    def test_cfg(self) -> MappingProxyType:
        """The test config, read-only: ``rule`` (its config dict) and
        ``chunk_size``."""
        return MappingProxyType(dict(rule=self.rule.to_config(), chunk_size=self.chunk_size))

    # ------------------------------------------------------------------ core
    def reconstruct(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor,
                    mask: Tensor, check: bool = True) -> Tensor:
        """Run the network in each instance's frame.

        Args:
            keypoints (Tensor): (B, K, 2) pixels.
            scores (Tensor): (B, K) confidences.
            bboxes (Tensor): (B, 4) xyxy pixels, all valid.
            mask (Tensor): bool (B, K), joints to reconstruct.
            check (bool): Check the boxes (see ``frame_from_bboxes``).

        Returns:
            Tensor: (B, K, 2) reconstructed pixel coordinates.
        """
        return self.reconstruct_with_errors(keypoints, scores, bboxes, mask, check)[0]

    @property
    def can_rescore(self) -> bool:
        """Whether the network estimates keypoint similarities, which
        ``test_cfg.rescore`` turns into instance scores."""
        return bool(getattr(self.network, 'predict_errors', False)
                    and self.quality_kind == 'keypoint_similarity')

    def reconstruct_with_errors(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor,
                                mask: Tensor, check: bool = True
                                ) -> Tuple[Tensor, Optional[Tensor]]:
        """:meth:`reconstruct`, plus the network's quality estimates where
        it has an error head: (B, K, 2) expected quality (higher is better,
        see :func:`mmport.models.do_no_harm.expected_quality`) of the input
        position and of the reconstruction, or None. With the rule's
        ``flip_test`` the instance and its mirror image are averaged."""
        frame = frame_from_bboxes(bboxes, keypoints, self.rotate_axis, check=check)
        coords = to_frame(keypoints, frame)
        if self.rule.flip_test:
            out, raw_err = self._flip_averaged(coords, mask, scores)
        else:
            out, raw_err = self._network(coords, mask, scores)
        quality = None if raw_err is None else expected_quality(raw_err, self.quality_kind)
        return from_frame(out, frame), quality

    def _network(self, coords: Tensor, mask: Tensor,
                 scores: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        if getattr(self.network, 'predict_errors', False):
            return self.network.forward_with_errors(coords, mask, scores)
        return self.network(coords, mask, scores), None

    def _check_flip_indices(self):
        if self.flip_indices is None or len(self.flip_indices) != self.num_keypoints:
            raise RuleError('refinement rule: flip_test needs the metainfo\'s flip_indices for '
                            f'{self.num_keypoints} keypoints, got {self.flip_indices!r}')

    def _flip_averaged(self, coords: Tensor, mask: Tensor,
                       scores: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Mean of the reconstructions (B, K, 2) (and of the error estimates)
        of the instances and of their mirror images (x -> -x about the frame
        centre, joints swapped by ``flip_indices``, an involution), in one
        network call."""
        idx = torch.tensor(self.flip_indices, device=coords.device)
        mirror = torch.tensor([-1.0, 1.0], dtype=coords.dtype, device=coords.device)
        both, raw_err = self._network(torch.cat([coords, coords[:, idx] * mirror]),
                                      torch.cat([mask, mask[:, idx]]),
                                      torch.cat([scores, scores[:, idx]]))
        # halves by reshape, not by len(): the batch axis stays dynamic in ONNX
        own, mirrored = both.reshape(2, -1, *both.shape[1:]).unbind(0)
        if raw_err is not None:
            err_own, err_mirrored = raw_err.reshape(2, -1, *raw_err.shape[1:]).unbind(0)
            raw_err = (err_own + err_mirrored[:, idx]) / 2
        return (own + (mirrored * mirror)[:, idx]) / 2, raw_err

    def refine_batch(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor,
                     instance_scores: Optional[Tensor] = None,
                     score_thr: Optional[float] = None
                     ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """The test-time rule on a whole batch, with no data-dependent
        control flow (so that it exports to ONNX as it is): the one
        implementation of the rule that :meth:`refine`, the ONNX export and
        OpenVINO run.

        Instances that cannot be refined (degenerate or non-finite box,
        non-finite keypoints or scores, no candidate joint, fewer than
        ``rule.min_confident`` joints that are not candidates) go through
        the network on placeholder values and come back unchanged. With a
        gate a candidate is replaced only where the network expects its
        reconstruction to be better than its input
        (:func:`mmport.models.do_no_harm.expected_gain_gate`, the joints
        outside their box at most ``gate.outside_box``); the others keep the
        input exactly.

        Args:
            keypoints (Tensor): (B, K, 2) pixels.
            scores (Tensor): (B, K) confidences.
            bboxes (Tensor): (B, 4) xyxy pixels.
            instance_scores (Tensor, optional): (B,) the instances' scores,
                rescored where the rule rescores (every instance with a valid
                box and finite values is judged then, also one without a
                candidate joint).
            score_thr (float, optional): Overrides the rule's threshold.

        Returns:
            tuple: refined keypoints (B, K, 2), the bool mask (B, K) of the
            replaced joints, and the instance scores (B,) (None where none
            were given).
        """
        rule = self.rule.with_threshold(score_thr)
        rescore = instance_scores is not None and rule.rescore is not None
        candidates = rule.candidate_mask(scores)
        ok = (valid_bboxes(bboxes) & torch.isfinite(keypoints).flatten(1).all(1)
              & torch.isfinite(scores).all(1)
              & ((~candidates).sum(1) >= rule.min_confident))
        if not rescore:
            ok = ok & candidates.any(1)
        unit_box = torch.tensor([0., 0., 1., 1.], dtype=bboxes.dtype, device=bboxes.device)
        safe_boxes = torch.where(ok[:, None], bboxes, unit_box)
        safe_kpts = torch.where(ok[:, None, None], keypoints, torch.zeros_like(keypoints))
        safe_scores = torch.where(ok[:, None], scores, torch.ones_like(scores))
        candidates = candidates & ok[:, None]
        rec, quality = self.reconstruct_with_errors(safe_kpts, safe_scores, safe_boxes,
                                                    candidates, check=False)
        replaced = candidates
        if rule.gate is not None:
            margin = rule.gate.margins(self.num_keypoints).to(quality.device)
            if rule.gate.outside_box is not None:
                margin = outside_box_margins(margin, joints_outside_boxes(safe_kpts, safe_boxes),
                                             rule.gate.outside_box)
            replaced = candidates & expected_gain_gate(quality, margin)
        if rule.blend == 'linear':
            w = (safe_scores / rule.score_thr).clamp(0, 1)[..., None]
            rec = w * safe_kpts + (1 - w) * rec
        refined = torch.where(replaced[..., None], rec, keypoints)
        if not rescore:
            return refined, replaced, instance_scores
        if rule.candidates != 'all':
            # the error head learned on candidate (masked) joints: the input
            # quality of the other joints comes from a pass in which every
            # joint is one; the replaced joints keep the estimate of the
            # reconstruction that replaced them
            _, every = self.reconstruct_with_errors(safe_kpts, safe_scores, safe_boxes,
                                                    torch.ones_like(candidates), check=False)
            quality = torch.where(candidates[..., None], quality, every)
        expected = expected_instance_similarity(quality, replaced)
        if rule.rescore.calibration is not None:
            expected = calibrated_similarity(expected, rule.rescore.calibration)
        rescored = rescored_instance_scores(instance_scores.to(expected), expected,
                                            rule.rescore.weight, ok)
        return refined, replaced, rescored

    @torch.no_grad()
    def refine(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor,
               score_thr: Optional[float] = None) -> Tuple[Tensor, Tensor]:
        """Refine a batch of instances by the rule, keeping their scores
        (:meth:`refine_and_rescore` with no instance scores).

        Args:
            keypoints (Tensor): (B, K, 2) pixels.
            scores (Tensor): (B, K) confidences.
            bboxes (Tensor): (B, 4) xyxy pixels.
            score_thr (float, optional): Overrides the rule's threshold.

        Returns:
            tuple[Tensor, Tensor]: refined keypoints (B, K, 2) and the bool
            mask (B, K) of the joints that were changed.
        """
        refined, replaced, _ = self.refine_and_rescore(keypoints, scores, bboxes, None,
                                                       score_thr)
        return refined, replaced

    @torch.no_grad()
    def refine_and_rescore(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor,
                           instance_scores: Optional[Tensor], score_thr: Optional[float] = None
                           ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Refine a batch of instances by the rule, ``chunk_size`` at a time
        through :meth:`refine_batch` (no per-instance or per-joint loops),
        and rescore them where the rule rescores (``instance_scores`` given
        and ``rule.rescore`` set; else the scores come back as given).
        Without rescoring, instances with no candidate joint come back
        unchanged without a network pass.

        Args:
            keypoints (Tensor): (B, K, 2) pixels.
            scores (Tensor): (B, K) confidences.
            bboxes (Tensor): (B, 4) xyxy pixels.
            instance_scores (Tensor, optional): (B,) the instances' scores.
            score_thr (float, optional): Overrides the rule's threshold.

        Returns:
            tuple: refined keypoints (B, K, 2), the replaced mask (B, K) and
            the instance scores (B,) (None where none were given).
        """
        check_instance_batch(self.num_keypoints, keypoints, scores, bboxes)
        if instance_scores is not None and instance_scores.shape != scores.shape[:1]:
            raise ValueError(f'instance_scores must be ({scores.shape[0]},), got '
                             f'{tuple(instance_scores.shape)}')
        rule = self.rule.with_threshold(score_thr)
        keypoints, scores, bboxes = keypoints.float(), scores.float(), bboxes.float()
        refined = keypoints.clone()
        replaced = torch.zeros_like(scores, dtype=torch.bool)
        rescoring = instance_scores is not None and rule.rescore is not None
        out_scores = None if instance_scores is None else instance_scores.float().clone()
        # an instance with no candidate joint comes back unchanged, so it
        # skips the network unless its score is to be judged
        todo = (torch.arange(len(scores)) if rescoring else
                torch.nonzero(rule.candidate_mask(scores).any(1)).flatten())
        # a hundred-odd poses at a time keep the activations in cache
        for i in range(0, len(todo), self.chunk_size):
            idx = todo[i:i + self.chunk_size]
            refined[idx], replaced[idx], rescored = self.refine_batch(
                keypoints[idx], scores[idx], bboxes[idx],
                out_scores[idx] if rescoring else None, score_thr)
            if rescoring:
                out_scores[idx] = rescored
        return refined, replaced, out_scores

    @torch.no_grad()
    def explain(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor,
                score_thr: Optional[float] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """Refine and return what each joint attended to.

        Args:
            keypoints (Tensor): (B, K, 2) pixels.
            scores (Tensor): (B, K).
            bboxes (Tensor): (B, 4) xyxy, valid.
            score_thr (float, optional): Overrides the rule's threshold.

        Returns:
            tuple: refined keypoints (B, K, 2), replaced mask (B, K), and
            attention (B, depth, K, K) averaged over heads: row i is how much
            joint i attended to every joint in each block.
        """
        refined, replaced = self.refine(keypoints, scores, bboxes, score_thr)
        keypoints, scores, bboxes = keypoints.float(), scores.float(), bboxes.float()
        frame = frame_from_bboxes(bboxes, keypoints, self.rotate_axis)
        maps = self.network.attention_maps(to_frame(keypoints, frame), replaced, scores)
        return refined, replaced, maps.mean(2).permute(1, 0, 2, 3)

    # --------------------------------------------------------------- mmengine
    def _stack(self, inputs: Union[Tensor, List[Tensor]]) -> Tensor:
        x = torch.stack(list(inputs)) if isinstance(inputs, (list, tuple)) else inputs
        if x.ndim != 3 or x.shape[1:] != (self.num_keypoints, 3):
            raise ValueError(f'inputs must be (B, {self.num_keypoints}, 3) rows of '
                             f'(x, y, score), got {tuple(x.shape)}')
        return x.float()

    @staticmethod
    def _gt(data_samples, field: str) -> Tensor:
        return torch.stack([torch.as_tensor(np.asarray(s.gt_instances.get(field)))[0]
                            for s in data_samples])

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        x = self._stack(inputs)
        if mode == 'loss':
            return self.loss(x, data_samples)
        if mode == 'predict':
            return self.predict(x, data_samples)
        if mode == 'tensor':
            bboxes = self._gt(data_samples, 'bboxes').to(x)
            return self.reconstruct(x[..., :2], x[..., 2], bboxes,
                                    self.rule.candidate_mask(x[..., 2]))
        raise ValueError(f'invalid mode {mode!r}')

    def loss(self, x: Tensor, data_samples) -> Dict[str, Tensor]:
        """Masked Joint Modeling loss of a packed batch (see :meth:`pose_loss`);
        the joints to reconstruct are ``gt_instances.joint_mask``."""
        device = x.device
        return self.pose_loss(
            x[..., :2], x[..., 2],
            bboxes=self._gt(data_samples, 'bboxes').to(device).float(),
            mask=self._gt(data_samples, 'joint_mask').to(device).bool(),
            target=self._gt(data_samples, 'keypoints').to(device).float(),
            visible=self._gt(data_samples, 'keypoints_visible').to(device).float() > 0)

    def pose_loss(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor, mask: Tensor,
                  target: Tensor, visible: Tensor) -> Dict[str, Tensor]:
        """Mean per-joint error (``train_cfg.loss_type``) in the normalised
        frame on the masked joints, plus ``visible_loss_weight`` times that on
        the others; joints without ground truth are ignored.

        Args:
            keypoints (Tensor): Input poses (B, K, 2), pixels.
            scores (Tensor): Their confidences (B, K).
            bboxes (Tensor): (B, 4) xyxy, valid.
            mask (Tensor): bool (B, K), joints to reconstruct.
            target (Tensor): Ground truth (B, K, 2), pixels.
            visible (Tensor): bool (B, K), labelled joints.
        """
        frame = frame_from_bboxes(bboxes, keypoints, self.rotate_axis)
        coords = to_frame(keypoints, frame)
        pred, raw_err = self._network(coords, mask, scores)
        target = to_frame(target, frame)
        err = joint_errors(pred, target, self.train_cfg['loss_type'],
                           self.train_cfg['loss_scale'])
        masked, unmasked = (mask & visible).float(), (~mask & visible).float()
        losses = dict(
            loss_masked=(err * masked).sum() / masked.sum().clamp_min(1),
            loss_visible=self.train_cfg['visible_loss_weight']
            * (err * unmasked).sum() / unmasked.sum().clamp_min(1))
        if raw_err is not None:
            losses['loss_error'] = self.train_cfg['error_loss_weight'] * quality_loss(
                raw_err, coords, pred.detach(), target, masked, self.quality_kind,
                self.joint_tolerances)
        return losses

    def predict(self, x: Tensor, data_samples) -> list:
        """Refine and write ``pred_instances`` (keypoints (1, K, 2),
        keypoint_scores, keypoints_init, keypoint_scores_init, refined_mask,
        bboxes) into the data samples. Scores of refined joints keep the
        detector's value: the refiner claims no confidence it cannot measure."""
        bboxes = self._gt(data_samples, 'bboxes').to(x.device).float()
        refined, replaced = self.refine(x[..., :2], x[..., 2], bboxes)
        for i, sample in enumerate(data_samples):
            sample.pred_instances = InstanceData(
                keypoints=refined[i:i + 1].cpu().numpy(),
                keypoint_scores=x[i:i + 1, :, 2].cpu().numpy(),
                keypoints_init=x[i:i + 1, :, :2].cpu().numpy(),
                keypoint_scores_init=x[i:i + 1, :, 2].cpu().numpy(),
                refined_mask=replaced[i:i + 1].cpu().numpy(),
                bboxes=bboxes[i:i + 1].cpu().numpy())
        return data_samples
