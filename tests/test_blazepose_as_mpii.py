"""BlazePose's COCO-17 predictions as MPII-16 poses (benchmarks.blazepose_as_mpii)."""
import numpy as np

from benchmarks.blazepose_as_mpii import (HEAD_SIZE_PER_TORSO, HEAD_TOP_PER_TORSO,
                                          NECK_PER_TORSO, blazepose_mpii_poses, coco_to_mpii)
from tests.conftest import REPO


def test_coco_to_mpii_maps_limbs_and_derives_the_trunk_and_head_by_hand():
    coco = np.zeros((1, 17, 2))
    coco[0, 5], coco[0, 6] = (1, 0), (-1, 0)  # left, right shoulder
    coco[0, 11], coco[0, 12] = (1, 4), (-1, 4)  # left, right hip
    coco[0, 3], coco[0, 4] = (3, -2), (-3, -2)  # ears, straight above the thorax
    coco[0, 16], coco[0, 9] = (-1, 9), (2, 1)  # right ankle, left wrist
    mpii = coco_to_mpii(coco)[0]
    np.testing.assert_allclose(mpii[0], (-1, 9))  # right ankle
    np.testing.assert_allclose(mpii[15], (2, 1))  # left wrist
    np.testing.assert_allclose(mpii[12], (-1, 0))  # right shoulder
    np.testing.assert_allclose(mpii[6], (0, 4))  # pelvis: the hips' midpoint
    np.testing.assert_allclose(mpii[7], (0, 0))  # thorax: the shoulders'
    # upper neck and head top: towards the ears, in torso lengths (4)
    np.testing.assert_allclose(mpii[8], (0, -4 * NECK_PER_TORSO))
    np.testing.assert_allclose(mpii[9], (0, -4 * HEAD_TOP_PER_TORSO))


def test_bundled_blazepose_poses_count_only_the_labelled_limbs():
    poses = blazepose_mpii_poses(root=f'{REPO}/data')
    n = len(poses.pred)
    assert 8000 < n < 12000 and poses.pred.shape == poses.gt.shape == (n, 16, 2)
    labelled = poses.visibility > 0
    # the trunk and head joints are derived, without ground truth
    assert not labelled[:, 6:10].any() and labelled[:, [2, 3, 12, 13]].all()
    assert (poses.visibility == 1).any()  # LSP's occluded joints
    # head size from the ground truth's torso (shoulders' to hips' midpoint)
    torso = np.linalg.norm((poses.gt[:, 12] + poses.gt[:, 13]) / 2
                           - (poses.gt[:, 2] + poses.gt[:, 3]) / 2, axis=-1)
    np.testing.assert_allclose(poses.head_size, HEAD_SIZE_PER_TORSO * torso)
    assert np.isfinite(poses.pred).all()
