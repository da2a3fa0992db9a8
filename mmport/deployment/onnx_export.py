"""Export a PORT refiner, test-time rule included, to ONNX."""
import io
from typing import Tuple

import numpy as np
import torch
from torch import Tensor, nn

# metadata_props keys of an exported file: what a runtime needs besides the
# graph (the threshold is baked into the graph; a runtime that skips
# instances with no doubtful joint must use the same one)
META_SCORE_THR = 'mmport.score_thr'
META_NUM_KEYPOINTS = 'mmport.num_keypoints'


class RefinerForExport(nn.Module):
    """``PORTRefiner.refine`` as a graph: (keypoints (B, K, 2) pixels,
    scores (B, K), bboxes (B, 4) xyxy) -> (refined keypoints (B, K, 2),
    replaced (B, K) bool), with the confidence threshold baked in."""

    def __init__(self, refiner, score_thr: float = None):
        super().__init__()
        self.refiner = refiner
        # eval() on the wrapper too: torch.onnx.export restores the wrapper's
        # mode afterwards, recursively, which left the refiner in train mode
        self.eval()
        self.score_thr = float(refiner.test_cfg['score_thr'] if score_thr is None else score_thr)

    def forward(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor):
        return self.refiner.refine_batch(keypoints, scores, bboxes, self.score_thr)


def export_onnx(refiner, out_file: str, score_thr: float = None, opset: int = 17) -> str:
    """Write ``out_file`` with a dynamic batch axis; returns the path.

    The file's metadata holds the threshold (``mmport.score_thr``) and the
    number of keypoints (``mmport.num_keypoints``).
    """
    import onnx
    module = RefinerForExport(refiner, score_thr)
    k = refiner.num_keypoints
    example = (torch.rand(2, k, 2) * 100, torch.rand(2, k),
               torch.tensor([[0., 0., 100., 100.]] * 2))
    graph = io.BytesIO()  # exported in memory: the file is written once, with its metadata
    torch.onnx.export(
        module, example, graph, input_names=['keypoints', 'scores', 'bboxes'],
        output_names=['refined_keypoints', 'replaced'], opset_version=opset,
        dynamic_axes={name: {0: 'batch'} for name in
                      ('keypoints', 'scores', 'bboxes', 'refined_keypoints', 'replaced')},
        dynamo=False)
    model = onnx.load_model_from_string(graph.getvalue())
    onnx.helper.set_model_props(model, {META_SCORE_THR: repr(module.score_thr),
                                        META_NUM_KEYPOINTS: str(k)})
    onnx.save(model, out_file)
    return out_file


def compare_onnx_with_pytorch(refiner, onnx_file: str, score_thr: float = None,
                              num_poses: int = 64, seed: int = 0) -> Tuple[float, bool]:
    """Run ``onnx_file`` in onnxruntime and ``refiner`` in PyTorch on random
    poses in a 200 px box.

    Args:
        refiner (PORTRefiner): The exported refiner.
        onnx_file (str): Its export.
        score_thr (float, optional): The threshold it was exported with
            (default: the refiner's).
        num_poses (int): Poses compared.
        seed (int): Seed of the random poses.

    Returns:
        tuple: The largest difference of the refined keypoints in pixels,
        and whether the replaced-joint masks are equal.
    """
    import onnxruntime as ort
    rng = np.random.default_rng(seed)
    k = refiner.num_keypoints
    kpts = rng.uniform(20, 180, (num_poses, k, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, (num_poses, k)).astype(np.float32)
    boxes = np.tile(np.array([[0, 0, 200, 200]], np.float32), (num_poses, 1))
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    out, out_replaced = session.run(None, dict(keypoints=kpts, scores=scores, bboxes=boxes))
    ref, replaced = refiner.refine(torch.from_numpy(kpts), torch.from_numpy(scores),
                                   torch.from_numpy(boxes), score_thr)
    return float(np.abs(out - ref.numpy()).max()), bool((out_replaced == replaced.numpy()).all())
