from .instance_batch import check_instance_batch
from .normalization import KeypointFrame, frame_from_bboxes, from_frame, to_frame, valid_bboxes
from .skeleton import hop_aggregation_matrices, hop_distances, skeleton_links_from_metainfo

__all__ = ['check_instance_batch', 'KeypointFrame', 'frame_from_bboxes', 'from_frame',
           'to_frame', 'valid_bboxes', 'hop_aggregation_matrices', 'hop_distances',
           'skeleton_links_from_metainfo']
