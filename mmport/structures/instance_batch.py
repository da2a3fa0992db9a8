"""Shape check of a batch of instances to refine (tensors or arrays)."""


def check_instance_batch(num_keypoints: int, keypoints, scores, bboxes) -> None:
    """Raise one clear ``ValueError`` unless ``keypoints`` is (B, K, 2),
    ``scores`` (B, K) and ``bboxes`` (B, 4), with K = ``num_keypoints``.

    Args:
        num_keypoints (int): K, the refiner's skeleton size.
        keypoints, scores, bboxes: Anything with ``.shape`` (torch tensors,
            numpy arrays).
    """
    shape = tuple(keypoints.shape)
    if len(shape) != 3 or shape[1:] != (num_keypoints, 2):
        raise ValueError(f'keypoints must be (B, {num_keypoints}, 2), got {shape}: the '
                         f'refiner was built for {num_keypoints} keypoints')
    if tuple(scores.shape) != shape[:2] or tuple(bboxes.shape) != (shape[0], 4):
        raise ValueError(f'scores must be {shape[:2]} and bboxes ({shape[0]}, 4), got '
                         f'{tuple(scores.shape)} and {tuple(bboxes.shape)}')
