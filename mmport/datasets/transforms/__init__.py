from .formatting import PackRefinerInputs
from .joint_masking import (MaskJoints, chain_joint_mask, random_joint_mask,
                            region_joint_mask, skeleton_subtrees)
from .keypoint_augmentation import KeypointRandomAffine, KeypointRandomFlip
from .loading import LoadInitialPredictions
from .refiner_inputs import SetRefinerInputs

__all__ = ['PackRefinerInputs', 'MaskJoints', 'chain_joint_mask', 'random_joint_mask',
           'region_joint_mask', 'skeleton_subtrees', 'KeypointRandomAffine',
           'KeypointRandomFlip', 'LoadInitialPredictions', 'SetRefinerInputs']
