"""MMPose's pose visualizer, marking the joints that PORT refined."""
from typing import Tuple, Union

import cv2
import mmcv
import numpy as np
from mmengine.structures import InstanceData
from mmpose.registry import VISUALIZERS
from mmpose.visualization import PoseLocalVisualizer


@VISUALIZERS.register_module()
class RefinedPoseLocalVisualizer(PoseLocalVisualizer):
    """``PoseLocalVisualizer`` that rings every refined joint.

    Instances with a ``refined_mask`` (as written by the refined estimators)
    are drawn as MMPose draws them, except that refined joints (and their
    links) are drawn even when their score (``keypoints_visible`` for MMPose's
    predictions) is below ``kpt_thr``: the
    estimator's low score is why they were refined. Each refined joint gets
    a ring, and, with ``show_initial``, a line from the estimator's position
    (``keypoints_init``) ending in a small dot there. Other instances (ground
    truth, unrefined models) are drawn exactly as by ``PoseLocalVisualizer``.

    Args:
        refined_color (str | tuple[int, int, int]): Colour (RGB) of the
            rings and initial positions. Defaults to magenta, which no MMPose
            dataset palette uses.
        show_initial (bool): Also draw where the estimator put each refined
            joint. Defaults to True.
        name (str): The instance's name (mmengine's visualizers are
            managed by name). Defaults to ``'visualizer'``.
        **kwargs: ``PoseLocalVisualizer``'s other arguments.
    """

    def __init__(self, name: str = 'visualizer',
                 refined_color: Union[str, Tuple[int, int, int]] = (255, 0, 255),
                 show_initial: bool = True, **kwargs):
        super().__init__(name=name, **kwargs)
        self.refined_color = refined_color
        self.show_initial = show_initial

    def _draw_instances_kpts(self, image: np.ndarray, instances: InstanceData,
                             kpt_thr: float = 0.3, show_kpt_idx: bool = False,
                             skeleton_style: str = 'mmpose'):
        """Draw keypoints and skeletons, then mark refined joints.

        Args:
            image (np.ndarray): RGB image (H, W, 3).
            instances (InstanceData): ``keypoints`` (N, K, 2),
                ``keypoint_scores`` (N, K) and, for refined predictions,
                ``refined_mask`` (N, K) and ``keypoints_init`` (N, K, 2).
            kpt_thr (float): Minimum score of a drawn (unrefined) keypoint.
            show_kpt_idx (bool): Write keypoint indices.
            skeleton_style (str): ``'mmpose'`` or ``'openpose'``.

        Returns:
            np.ndarray: The drawn RGB image.
        """
        if 'refined_mask' not in instances or 'keypoints' not in instances:
            return super()._draw_instances_kpts(image, instances, kpt_thr, show_kpt_idx,
                                                skeleton_style)
        refined = np.asarray(instances.refined_mask, dtype=bool)
        shown = instances.clone()
        # MMPose draws a joint whose visibility (the score, for predictions)
        # reaches kpt_thr
        for key in ('keypoint_scores', 'keypoints_visible'):
            if key in shown:
                value = np.array(shown.get(key), dtype=np.float32)
                value[refined] = np.maximum(value[refined], kpt_thr)
                shown.set_field(value, key)
        image = super()._draw_instances_kpts(image, shown, kpt_thr, show_kpt_idx,
                                             skeleton_style)
        if not refined.any():
            return image
        # drawn with OpenCV on the image array: MMPose's OpenCV backend draws
        # filled circles only, and this works for both backends
        image = np.ascontiguousarray(image)
        color = self.refined_color
        color = (mmcv.color_val(color)[::-1] if isinstance(color, str)
                 else tuple(int(c) for c in color))
        points = np.asarray(instances.keypoints)[..., :2][refined]
        if self.show_initial and 'keypoints_init' in instances:
            initial = np.asarray(instances.keypoints_init)[..., :2][refined]
            for start, end in zip(_pixels(initial), _pixels(points)):
                cv2.line(image, start, end, color, max(1, int(self.line_width)), cv2.LINE_AA)
                cv2.circle(image, start, max(1, int(self.radius) // 2 + 1), color, -1,
                           cv2.LINE_AA)
        for point in _pixels(points):
            cv2.circle(image, point, int(2 * self.radius + 2), color, 2, cv2.LINE_AA)
        self.set_image(image)
        return self.get_image()


def _pixels(points: np.ndarray) -> list:
    """Integer pixel positions of points (n, 2) for OpenCV."""
    return [(int(round(x)), int(round(y))) for x, y in points]
