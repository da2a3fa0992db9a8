from .error_synthesis import ERROR_TYPES, SynthesizePoseErrors, synthesize_errors
from .formatting import PackRefinerInputs
from .joint_masking import (MaskJoints, chain_joint_mask, random_joint_mask,
                            region_joint_mask, skeleton_subtrees)
from .keypoint_augmentation import KeypointRandomAffine, KeypointRandomFlip
from .loading import LoadInitialPredictions
from .occlusion import LoadOcclusionFlags
from .refiner_inputs import SetRefinerInputs

__all__ = ['ERROR_TYPES', 'SynthesizePoseErrors', 'synthesize_errors', 'LoadOcclusionFlags',
           'PackRefinerInputs', 'MaskJoints', 'chain_joint_mask', 'random_joint_mask',
           'region_joint_mask', 'skeleton_subtrees', 'KeypointRandomAffine',
           'KeypointRandomFlip', 'LoadInitialPredictions', 'SetRefinerInputs']
