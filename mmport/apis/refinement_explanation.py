"""Explain one refinement of a results file: the joints a refined joint's
reconstruction relied on (PORT's attention over joints), drawn over the
instance."""
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from mmport.datasets.prediction_files import PoseResults, load_pose_results
from mmport.models.refiner_loading import load_refiner
from mmport.utils import MMPortError
from mmport.visualization import plot_explanation
from .framing import refiner_boxes
from .ground_truth_scoring import load_coco_annotations, match_ground_truth


@dataclass
class RefinementExplanation:
    """What :func:`explain_refinement` drew.

    Attributes:
        out (str): The written image.
        instance (int): Index of the explained instance in the results file.
        joint (int): The explained (refined) joint.
        joint_names (list[str], optional): Names of the K joints.
        score (float): The detector's confidence of ``joint``.
        moved (float): How far the refiner moved ``joint``, in pixels.
        attention (np.ndarray): (K,) attention of ``joint`` over all joints,
            averaged over heads and blocks.
    """
    out: str
    instance: int
    joint: int
    joint_names: Optional[List[str]]
    score: float
    moved: float
    attention: np.ndarray

    def name(self, j: int) -> str:
        return self.joint_names[j] if self.joint_names else str(j)

    def most_attended(self, n: int = 5) -> List[int]:
        """The ``n`` joints (other than ``joint``) with the most attention."""
        return [int(j) for j in np.argsort(-self.attention) if j != self.joint][:n]

    def summary(self) -> str:
        return (f'wrote {self.out}: instance {self.instance}, joint {self.name(self.joint)} '
                f'(score {self.score:.2f}) moved {self.moved:.1f} px; most attended: '
                + ', '.join(f'{self.name(j)} {self.attention[j]:.2f}'
                            for j in self.most_attended()))


def find_instance(results: PoseResults, image: Union[int, str], results_file: str,
                  coco: Optional[dict] = None) -> int:
    """Index of the instance ``image`` names: an index, or the first instance
    whose image key (or, for COCO json results, image file name) contains
    the string ``image``."""
    if isinstance(image, int) or str(image).isdigit():
        n = int(image)
    else:
        hits = [i for i, key in enumerate(results.image_keys) if image in key]
        if not hits and coco is not None:
            names = {str(img['id']): img['file_name'] for img in coco['images']}
            hits = [i for i, key in enumerate(results.image_keys)
                    if image in names.get(key, '')]
        if not hits:
            raise MMPortError(f'{results_file}: no instance of an image matching {image!r}')
        n = hits[0]
    if not 0 <= n < len(results):
        raise MMPortError(f'{results_file}: instance {n} out of range ({len(results)})')
    return n


def explain_refinement(results: str, checkpoint: Union[str, torch.nn.Module], out: str,
                       ann: Optional[str] = None, image: Union[int, str] = 0,
                       joint: Optional[int] = None, image_root: Optional[str] = None,
                       score_thr: Optional[float] = None) -> RefinementExplanation:
    """Draw which joints one refined joint's reconstruction relied on.

    The starred joint is linked to every other joint by a line whose width
    and opacity grow with its attention, averaged over heads and blocks.

    Args:
        results (str): Any results file :func:`refine_results_file` reads.
        checkpoint (str | PORTRefiner): A refiner checkpoint, or a loaded
            refiner.
        out (str): The image to write.
        ann (str, optional): COCO-style annotations: the ground truth drawn
            and the image names searched; never the refiner's frame (that
            is the results' own box, else the keypoints' extent, as in
            :func:`refine_results_file`).
        image (int | str): Instance index, or a substring of its image name.
        joint (int, optional): The joint to explain; default: the replaced
            joint the refiner moved most.
        image_root (str, optional): Folder of the images, to draw on them.
        score_thr (float, optional): Confidence threshold; default: the
            refiner's.

    Returns:
        RefinementExplanation: The explained instance, joint and attention.

    Raises:
        MMPortError: No such instance, or nothing below the threshold.
    """
    poses = load_pose_results(results)
    refiner = load_refiner(checkpoint) if isinstance(checkpoint, str) else checkpoint
    thr = refiner.rule.with_threshold(score_thr).score_thr
    coco = load_coco_annotations(ann) if ann else None
    match = match_ground_truth(poses, coco) if coco else None
    # the results' own boxes, never the annotations'
    boxes = refiner_boxes(poses, -np.inf if thr is None else thr)
    n = find_instance(poses, image, results, coco)
    kpts = torch.from_numpy(poses.keypoints[n:n + 1]).float()
    scores = torch.from_numpy(poses.keypoint_scores[n:n + 1]).float()
    refined, replaced, attention = refiner.explain(
        kpts, scores, torch.from_numpy(boxes[n:n + 1]).float(), thr)
    refined, replaced = refined[0].numpy(), replaced[0].numpy()
    if not replaced.any():
        raise MMPortError(f'instance {n}: the refiner moved none of its joints (no candidate '
                          'joint, its gate, or a box or values it cannot use): nothing to '
                          'explain')
    moved = np.linalg.norm(refined - kpts[0].numpy(), axis=-1)
    if joint is None:
        joint = int(np.argmax(np.where(replaced, moved, -1)))
    row = attention[0, :, joint].mean(0).numpy()

    gt = picture = None
    if match is not None and match.ann_index[n] >= 0:
        labels = np.reshape(match.annotations[match.ann_index[n]]['keypoints'], (-1, 3))
        gt = labels[:, :2].astype(float)
        gt[labels[:, 2] == 0] = np.nan
    if image_root:
        name = poses.image_keys[n]
        if poses.format == 'coco_json' and coco is not None:
            name = {str(i['id']): i['file_name'] for i in coco['images']}.get(name, name)
        path = osp.join(image_root, osp.basename(name))
        if osp.exists(path):
            import mmcv
            picture = mmcv.imread(path, channel_order='rgb')
    names: Optional[Sequence[str]] = refiner.metainfo.get('keypoint_id2name')
    names = [names[i] for i in range(len(row))] if names else None
    explanation = RefinementExplanation(out, n, joint, names, float(scores[0, joint]),
                                        float(moved[joint]), row)
    plot_explanation(kpts[0].numpy(), refined, replaced, row, joint,
                     refiner.metainfo['skeleton_links'], out, names, picture, gt,
                     title=f'{osp.basename(poses.image_keys[n])}: refined '
                     f'{explanation.name(joint)} moved {moved[joint]:.1f} px')
    return explanation
