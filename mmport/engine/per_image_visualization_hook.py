"""MMPose's test-time visualization hook, one drawing per image."""
import os.path as osp
from typing import Optional, Sequence

import mmcv
import mmengine
import mmengine.fileio as fileio
from mmengine.dist import get_dist_info
from mmpose.engine.hooks import PoseVisualizationHook
from mmpose.registry import HOOKS
from mmpose.structures import PoseDataSample, merge_data_samples


@HOOKS.register_module()
class PerImagePoseVisualizationHook(PoseVisualizationHook):
    """``PoseVisualizationHook`` whose test drawings hold all instances of
    an image in one file, ``out_dir/<image file name>``.

    MMPose's hook draws every data sample on its own, and a top-down test
    has one data sample per instance: an image with five people becomes
    five files of one person each. This hook collects the consecutive
    samples of each image (datasets list an image's instances together) and
    draws them together. Validation drawings are MMPose's.

    In a distributed test each process draws the instances it predicted;
    its files are named ``<stem>_rank<r>.<ext>``.

    Args:
        Those of ``PoseVisualizationHook``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending = []
        self._test_out_dir: Optional[str] = None

    def before_test(self, runner) -> None:
        self._pending = []
        if self.enable and self.out_dir is not None:
            # resolved once (MMPose's hook joins it again at every iteration)
            self._test_out_dir = osp.join(runner.work_dir, runner.timestamp, self.out_dir)
            mmengine.mkdir_or_exist(self._test_out_dir)

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[PoseDataSample]) -> None:
        if self.enable is False:
            return
        self._visualizer.set_dataset_meta(runner.test_evaluator.dataset_meta)
        for sample in outputs:
            if self._pending and self._pending[0].get('img_path') != sample.get('img_path'):
                self._draw_pending()
            self._pending.append(sample)

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        if self.enable and self._pending:
            self._draw_pending()

    def _draw_pending(self) -> None:
        samples, self._pending = self._pending, []
        img_path = samples[0].get('img_path')
        img = mmcv.imfrombytes(fileio.get(img_path, backend_args=self.backend_args),
                               channel_order='rgb')
        self._test_index += 1
        out_file = None
        if self._test_out_dir is not None:
            name = osp.basename(img_path)
            rank, world_size = get_dist_info()
            if world_size > 1:
                stem, ext = osp.splitext(name)
                name = f'{stem}_rank{rank}{ext}'
            out_file = osp.join(self._test_out_dir, name)
        self._visualizer.add_datasample(
            osp.basename(img_path) if self.show else 'test_img',
            img,
            data_sample=merge_data_samples(samples),
            show=self.show,
            draw_gt=False,
            draw_bbox=True,
            draw_heatmap=True,
            wait_time=self.wait_time,
            kpt_thr=self.kpt_thr,
            out_file=out_file,
            step=self._test_index)
