"""Export a PORT refiner, test-time rule included, to ONNX."""
import io
import json
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

# metadata_props keys of an exported file: what a runtime needs besides the
# graph. The rule (with the threshold it was exported with) is baked into
# the graph; a runtime that skips instances with no candidate joint must
# know which joints are candidates, and whether the graph rescores.
META_RULE = 'mmport.rule'
META_CANDIDATES = 'mmport.candidates'
META_SCORE_THR = 'mmport.score_thr'
META_NUM_KEYPOINTS = 'mmport.num_keypoints'
META_RESCORE = 'mmport.rescore'
# values of META_RESCORE
RESCORE_IN_GRAPH, RESCORE_DROPPED, RESCORE_NONE = 'in_graph', 'dropped', 'none'


class RefinerForExport(nn.Module):
    """``PORTRefiner.refine_batch`` as a graph: (keypoints (B, K, 2) pixels,
    scores (B, K), bboxes (B, 4) xyxy[, instance_scores (B,)]) ->
    (refined keypoints (B, K, 2), replaced (B, K) bool[, instance scores
    (B,)]), the rule baked in. The instance scores are an input and an
    output only where the rule rescores and ``export_rescoring`` is True.
    """

    def __init__(self, refiner, score_thr: Optional[float] = None,
                 export_rescoring: bool = True):
        super().__init__()
        self.refiner = refiner
        # eval() on the wrapper too: torch.onnx.export restores the wrapper's
        # mode afterwards, recursively, which left the refiner in train mode
        self.eval()
        self.rule = refiner.rule.with_threshold(score_thr)
        self.score_thr = score_thr
        self.rescoring = bool(export_rescoring and self.rule.rescore is not None)

    def forward(self, keypoints: Tensor, scores: Tensor, bboxes: Tensor,
                instance_scores: Optional[Tensor] = None):
        refined, replaced, rescored = self.refiner.refine_batch(
            keypoints, scores, bboxes, instance_scores if self.rescoring else None,
            self.score_thr)
        return (refined, replaced, rescored) if self.rescoring else (refined, replaced)


def export_onnx(refiner, out_file: str, score_thr: Optional[float] = None, opset: int = 17,
                export_rescoring: bool = True) -> str:
    """Write ``out_file`` with a dynamic batch axis; returns the path.

    Args:
        refiner (PORTRefiner): The refiner.
        out_file (str): The ONNX file.
        score_thr (float, optional): Overrides the rule's threshold.
        opset (int): ONNX opset.
        export_rescoring (bool): Where the rule rescores, the graph takes
            and returns the instance scores (True), or drops the rescoring
            (False: the file's metadata says ``mmport.rescore=dropped``).

    The file's metadata holds the rule (``mmport.rule``, JSON), its
    candidates and threshold, the number of keypoints and whether the graph
    rescores (``mmport.rescore``: ``in_graph``, ``dropped`` or ``none``).
    """
    import onnx
    module = RefinerForExport(refiner, score_thr, export_rescoring)
    k = refiner.num_keypoints
    example = (torch.rand(2, k, 2) * 100, torch.rand(2, k),
               torch.tensor([[0., 0., 100., 100.]] * 2))
    inputs, outputs = ['keypoints', 'scores', 'bboxes'], ['refined_keypoints', 'replaced']
    if module.rescoring:
        example += (torch.rand(2), )
        inputs.append('instance_scores')
        outputs.append('rescored_instance_scores')
    graph = io.BytesIO()  # exported in memory: the file is written once, with its metadata
    torch.onnx.export(
        module, example, graph, input_names=inputs, output_names=outputs,
        opset_version=opset, dynamic_axes={name: {0: 'batch'} for name in inputs + outputs},
        dynamo=False)
    model = onnx.load_model_from_string(graph.getvalue())
    rule = module.rule
    rescore = (RESCORE_NONE if rule.rescore is None else
               RESCORE_IN_GRAPH if module.rescoring else RESCORE_DROPPED)
    onnx.helper.set_model_props(model, {
        META_RULE: json.dumps(rule.to_config()), META_CANDIDATES: rule.candidates,
        META_SCORE_THR: repr(rule.score_thr), META_NUM_KEYPOINTS: str(k),
        META_RESCORE: rescore})
    onnx.save(model, out_file)
    return out_file


def compare_onnx_with_pytorch(refiner, onnx_file: str, score_thr: Optional[float] = None,
                              num_poses: int = 64, seed: int = 0) -> Tuple[float, bool, float]:
    """Run ``onnx_file`` in onnxruntime and ``refiner`` in PyTorch on random
    poses in a 200 px box.

    Args:
        refiner (PORTRefiner): The exported refiner.
        onnx_file (str): Its export.
        score_thr (float, optional): The threshold it was exported with
            (default: the rule's).
        num_poses (int): Poses compared.
        seed (int): Seed of the random poses.

    Returns:
        tuple: The largest difference of the refined keypoints in pixels,
        whether the replaced-joint masks are equal, and the largest
        difference of the rescored instance scores (0 where the graph does
        not rescore).
    """
    import onnxruntime as ort
    rng = np.random.default_rng(seed)
    k = refiner.num_keypoints
    kpts = rng.uniform(20, 180, (num_poses, k, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, (num_poses, k)).astype(np.float32)
    boxes = np.tile(np.array([[0, 0, 200, 200]], np.float32), (num_poses, 1))
    instance = rng.uniform(0.2, 1, num_poses).astype(np.float32)
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    feed = dict(keypoints=kpts, scores=scores, bboxes=boxes)
    rescoring = 'instance_scores' in {i.name for i in session.get_inputs()}
    if rescoring:
        feed['instance_scores'] = instance
    out = session.run(None, feed)
    ref, replaced, rescored = refiner.refine_and_rescore(
        torch.from_numpy(kpts), torch.from_numpy(scores), torch.from_numpy(boxes),
        torch.from_numpy(instance) if rescoring else None, score_thr)
    score_err = float(np.abs(out[2] - rescored.numpy()).max()) if rescoring else 0.0
    return (float(np.abs(out[0] - ref.numpy()).max()), bool((out[1] == replaced.numpy()).all()),
            score_err)
