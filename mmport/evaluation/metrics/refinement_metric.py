"""What the refinement changed: initial vs refined keypoint errors."""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmpose.registry import METRICS

from mmport.evaluation.functional import refinement_report

# (first, second) joint names whose distance is the torso size, by skeleton.
TORSO_JOINTS = (('left_shoulder', 'right_hip'), ('right_shoulder', 'left_hip'))


@METRICS.register_module()
class RefinementMetric(BaseMetric):
    """Scores the refined keypoints and the detector's initial ones side by
    side, over all labelled joints, over the joints the refiner replaced,
    and over the joints the ground truth marks occluded (COCO v=1), where
    the samples carry ``gt_instances.keypoints_occluded``.

    Expects each data sample's ``pred_instances`` to hold ``keypoints``
    (N, K, 2), ``keypoints_init`` (N, K, 2) and ``refined_mask`` (N, K), and
    ``gt_instances`` to hold ``keypoints``, ``keypoints_visible``,
    ``bboxes`` and, for PCKh, ``head_size``.

    Reported keys: ``EPE``, ``PCK@thr`` (bbox), ``PCKh@thr`` (head),
    ``tPCK@thr`` (torso), ``AUC``, each also suffixed ``_replaced`` and
    ``_occluded``; the same prefixed ``init_`` for the detector's
    predictions; ``replaced_ratio`` and ``num_instances``.

    Args:
        pck_thr (float): PCK threshold. Defaults to 0.7 (MMPose's hand PCKh).
        norm_items (sequence[str]): Any of ``'bbox'``, ``'head'``, ``'torso'``.
        auc_norm_factor (float): AUC normalisation in pixels. Defaults to 30.
        auc_num_thrs (int): AUC thresholds. Defaults to 20.
        collect_device (str): See mmengine's ``BaseMetric``.
        prefix (str, optional): See mmengine's ``BaseMetric``.
    """

    def __init__(self, pck_thr: float = 0.7,
                 norm_items: Union[str, Sequence[str]] = ('bbox', 'head', 'torso'),
                 auc_norm_factor: float = 30.0, auc_num_thrs: int = 20,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        norm_items = [norm_items] if isinstance(norm_items, str) else list(norm_items)
        unknown = set(norm_items) - {'bbox', 'head', 'torso'}
        if unknown:
            raise ValueError(f'unknown norm_items {sorted(unknown)}')
        self.pck_thr = pck_thr
        self.norm_items = norm_items
        self.auc_norm_factor = auc_norm_factor
        self.auc_num_thrs = auc_num_thrs

    def _torso_ids(self) -> Optional[tuple]:
        name2id = (self.dataset_meta or {}).get('keypoint_name2id', {})
        for a, b in TORSO_JOINTS:
            if a in name2id and b in name2id:
                return name2id[a], name2id[b]
        return None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred, gt = sample['pred_instances'], sample['gt_instances']
            if 'keypoints_init' not in pred or 'refined_mask' not in pred:
                raise KeyError('RefinementMetric needs pred_instances.keypoints_init and '
                               'refined_mask: evaluate a model that refines (mmport)')
            n = len(gt['keypoints'])
            if len(pred['keypoints']) != n:
                raise ValueError(f'sample {sample.get("img_path", "?")}: {len(pred["keypoints"])} '
                                 f'predicted instances for {n} ground-truth instances')
            result = dict(
                refined=np.asarray(pred['keypoints'], np.float64)[..., :2],
                init=np.asarray(pred['keypoints_init'], np.float64)[..., :2],
                replaced=np.asarray(pred['refined_mask'], bool),
                gt=np.asarray(gt['keypoints'], np.float64)[..., :2],
                visible=np.asarray(gt['keypoints_visible'], np.float64).reshape(n, -1),
                bboxes=np.asarray(gt['bboxes'], np.float64).reshape(n, 4),
                head_size=np.asarray(gt.get('head_size', np.zeros(n)), np.float64).reshape(n),
            )
            if 'keypoints_occluded' in gt:
                result['occluded'] = np.asarray(gt['keypoints_occluded'], bool).reshape(n, -1)
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        logger = MMLogger.get_current_instance()
        cat = {k: np.concatenate([r[k] for r in results]) for k in results[0]
               if all(k in r for r in results)}
        norm_factors = {}
        if 'bbox' in self.norm_items:
            size = (cat['bboxes'][:, 2:] - cat['bboxes'][:, :2]).max(1)
            norm_factors['bbox'] = np.repeat(size[:, None], 2, 1)
        if 'head' in self.norm_items:
            norm_factors['head'] = np.repeat(cat['head_size'][:, None], 2, 1)
        torso = self._torso_ids()
        if 'torso' in self.norm_items and torso is not None:
            size = np.linalg.norm(cat['gt'][:, torso[0]] - cat['gt'][:, torso[1]], axis=-1)
            norm_factors['torso'] = np.repeat(size[:, None], 2, 1)
        report = refinement_report(
            cat['init'], cat['refined'], cat['gt'], cat['visible'], cat['replaced'],
            cat.get('occluded'), pck_thr=self.pck_thr, norm_factors=norm_factors,
            auc_norm_factor=self.auc_norm_factor, auc_num_thrs=self.auc_num_thrs)
        metrics = {k: v for k, v in report['refined'].items() if not k.startswith('count')}
        metrics.update({f'init_{k}': v for k, v in report['init'].items()
                        if not k.startswith('count')})
        labelled = cat['visible'] > 0
        metrics['replaced_ratio'] = float(
            (cat['replaced'] & labelled).sum() / max(labelled.sum(), 1))
        metrics['num_instances'] = int(len(cat['gt']))
        logger.info('refinement: EPE %.3f -> %.3f, replaced joints EPE %.3f -> %.3f (%.1f%% of '
                    'joints replaced)', metrics['init_EPE'], metrics['EPE'],
                    metrics['init_EPE_replaced'], metrics['EPE_replaced'],
                    100 * metrics['replaced_ratio'])
        return metrics
