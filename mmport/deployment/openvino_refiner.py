"""An exported refiner on OpenVINO's CPU runtime: the fast deployment path."""
import os.path as osp
from typing import Optional, Tuple

import numpy as np

from mmport.structures import check_instance_batch
from mmport.utils import InputFileError
from .onnx_export import (META_CANDIDATES, META_NUM_KEYPOINTS, META_RESCORE, META_SCORE_THR,
                          RESCORE_IN_GRAPH)

PRECISIONS = ('f32', 'bf16')


class OpenVINORefiner:
    """``PORTRefiner.refine`` / ``refine_and_rescore`` from an ONNX file
    written by :func:`export_onnx` (or ``tools/export_onnx.py``), run by
    OpenVINO.

    Same rule and output as the PyTorch refiner: without rescoring,
    instances with no candidate joint come back unchanged without
    inference; the others go through the graph ``chunk_size`` at a time,
    ``num_requests`` requests in flight (OpenVINO's throughput mode: one
    stream per core). A graph exported with its rescoring
    (``rescoring`` True) also rescores in :meth:`refine_and_rescore`.
    The last, shorter chunk runs on a second, dynamic-batch compilation of
    the same graph, so nothing is padded. One ``refine`` call at a time per
    object.

    Args:
        onnx_file (str): The exported refiner; its metadata must hold
            ``mmport.score_thr`` and ``mmport.num_keypoints`` (files of
            older exports lack ``mmport.candidates``: below the threshold).
        precision (str): ``'f32'`` (default: matches PyTorch to about 1e-4
            px) or ``'bf16'`` (faster where the CPU has bf16 instructions;
            on the Panoptic benchmark it moved refined joints by up to
            0.93 px and the EPE by 0.0004 px). Set explicitly because
            OpenVINO's own default is bf16 on such CPUs.
        chunk_size (int): Poses per inference request. Defaults to 128.
        num_requests (int): Requests in flight. Defaults to 4.
        device (str): OpenVINO device. Defaults to ``'CPU'``.
    """

    def __init__(self, onnx_file: str, precision: str = 'f32', chunk_size: int = 128,
                 num_requests: int = 4, device: str = 'CPU'):
        try:
            import openvino as ov
        except ImportError as err:
            raise ImportError('OpenVINORefiner needs openvino (requirements/deploy.txt; '
                              'tools/setup_env.sh installs it)') from err
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
        for name, value in (('chunk_size', chunk_size), ('num_requests', num_requests)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        if not osp.isfile(onnx_file):
            raise InputFileError(onnx_file, 'does not exist')
        core = ov.Core()
        try:
            model = core.read_model(onnx_file)
        except RuntimeError as err:
            raise InputFileError(onnx_file, 'is not a model OpenVINO can read: '
                                 f'{str(err).strip().splitlines()[0]}') from None
        meta = {}
        for key in (META_SCORE_THR, META_NUM_KEYPOINTS):
            if not model.has_rt_info(['framework', key]):
                raise InputFileError(onnx_file, f'has no {key} metadata: export the refiner '
                                     'with mmport (tools/export_onnx.py)')
            meta[key] = model.get_rt_info(['framework', key]).astype(str)
        def optional(key, default):
            if model.has_rt_info(['framework', key]):
                return model.get_rt_info(['framework', key]).astype(str)
            return default
        self.candidates = optional(META_CANDIDATES, 'below_score')
        self.score_thr = (None if self.candidates == 'all' else float(meta[META_SCORE_THR]))
        self.rescoring = optional(META_RESCORE, 'none') == RESCORE_IN_GRAPH
        self.num_keypoints = k = int(meta[META_NUM_KEYPOINTS])
        self.chunk_size = chunk_size
        config = {'INFERENCE_PRECISION_HINT': precision}
        tail = core.compile_model(model, device, {**config, 'PERFORMANCE_HINT': 'LATENCY'})
        self._tail = tail.create_infer_request()
        # a static batch: measured ~1.2x faster than the dynamic graph
        shapes = {'keypoints': [chunk_size, k, 2], 'scores': [chunk_size, k],
                  'bboxes': [chunk_size, 4]}
        if self.rescoring:
            shapes['instance_scores'] = [chunk_size]
        model.reshape(shapes)
        chunks = core.compile_model(model, device, {**config, 'PERFORMANCE_HINT': 'THROUGHPUT'})
        self._queue = ov.AsyncInferQueue(chunks, num_requests)
        self._queue.set_callback(self._collect)
        self._outputs = None

    def _collect(self, request, idx: np.ndarray):
        refined, replaced, rescored = self._outputs
        refined[idx] = request.get_tensor('refined_keypoints').data
        replaced[idx] = request.get_tensor('replaced').data
        if self.rescoring:
            rescored[idx] = request.get_tensor('rescored_instance_scores').data

    def refine(self, keypoints: np.ndarray, scores: np.ndarray,
               bboxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Refine a batch of instances, keeping their scores.

        Args:
            keypoints (np.ndarray): (B, K, 2) pixels.
            scores (np.ndarray): (B, K) confidences.
            bboxes (np.ndarray): (B, 4) xyxy pixels.

        Returns:
            tuple[np.ndarray, np.ndarray]: refined keypoints (B, K, 2)
            float32 and the bool mask (B, K) of the joints that were changed.
        """
        refined, replaced, _ = self.refine_and_rescore(keypoints, scores, bboxes, None)
        return refined, replaced

    def refine_and_rescore(self, keypoints: np.ndarray, scores: np.ndarray,
                           bboxes: np.ndarray, instance_scores: Optional[np.ndarray]
                           ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Refine a batch of instances and, where the graph rescores and
        ``instance_scores`` (B,) are given, rescore them (every instance
        then goes through the graph, as in PyTorch).

        Returns:
            tuple: refined keypoints (B, K, 2) float32, the replaced mask
            (B, K) and the instance scores (B,) float32 (None where none
            were given; as given where the graph does not rescore).
        """
        keypoints = np.ascontiguousarray(keypoints, np.float32)
        scores = np.ascontiguousarray(scores, np.float32)
        bboxes = np.ascontiguousarray(bboxes, np.float32)
        check_instance_batch(self.num_keypoints, keypoints, scores, bboxes)
        given = None if instance_scores is None else np.ascontiguousarray(
            instance_scores, np.float32).reshape(-1)
        if given is not None and len(given) != len(scores):
            raise ValueError(f'instance_scores must be ({len(scores)},), got {given.shape}')
        rescoring = self.rescoring and given is not None
        feed_scores = given if given is not None else np.ones(len(scores), np.float32)
        refined, replaced = keypoints.copy(), np.zeros(scores.shape, bool)
        rescored = None if given is None else given.copy()
        if rescoring or self.candidates == 'all':
            todo = np.arange(len(scores))
        else:
            todo = np.flatnonzero((scores < self.score_thr).any(1))

        def feed(idx):
            out = dict(keypoints=keypoints[idx], scores=scores[idx], bboxes=bboxes[idx])
            if self.rescoring:
                out['instance_scores'] = feed_scores[idx]
            return out
        full = len(todo) - len(todo) % self.chunk_size
        self._outputs = refined, replaced, (rescored if rescoring else
                                            np.empty(len(scores), np.float32))
        for i in range(0, full, self.chunk_size):
            idx = todo[i:i + self.chunk_size]
            self._queue.start_async(feed(idx), idx)
        if full < len(todo):  # the rest, while the chunks run
            idx = todo[full:]
            self._tail.infer(feed(idx))
            self._collect(self._tail, idx)
        self._queue.wait_all()
        self._outputs = None
        return refined, replaced, rescored
