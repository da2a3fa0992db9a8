from .port_refiner import PORTRefiner
from .pose_relation_transformer import PoseRelationTransformer
from .refined_bottomup import RefinedBottomupPoseEstimator
from .refined_topdown import RefinedTopdownPoseEstimator
from .skeleton_attention import SkeletonAttentionBlock, SkeletonGraphProjection

__all__ = ['PORTRefiner', 'PoseRelationTransformer', 'RefinedBottomupPoseEstimator',
           'RefinedTopdownPoseEstimator', 'SkeletonAttentionBlock',
           'SkeletonGraphProjection']
